//! The machine-readable blocks tugboat keeps in PR and issue bodies: one hidden HTML comment,
//! `<!-- <marker> <json> -->`, read back after a restart or by another replica.

use serde::Serialize;
use serde::de::DeserializeOwned;

const END: &str = " -->";

/// The text of the block after `marker` (e.g. `<!-- tugboat:state `), if the body has one:
/// the last one, where tugboat writes it (below any text, whose quotes of outside text are
/// made inert, `domain::markdown`, and cannot hold a marker).
pub fn raw<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let start = body.rfind(marker)? + marker.len();
    let end = start + body[start..].find(END)?;
    Some(&body[start..end])
}

/// The block after `marker`, if there is one that parses.
pub fn read<T: DeserializeOwned>(body: &str, marker: &str) -> Option<T> {
    serde_json::from_str(raw(body, marker)?).ok()
}

/// `value` as the JSON of a block: `<` and `>` (which JSON holds only inside strings) are
/// escaped, so that a value can neither end the block (` -->`) nor hold a marker of its own.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
}

/// `body` with its block after `marker` replaced by `value` (appended when it has none).
pub fn write<T: Serialize>(body: &str, marker: &str, value: &T) -> String {
    let block = format!("{marker}{}{END}", json(value));
    if let Some(start) = body.rfind(marker)
        && let Some(len) = body[start..].find(END)
    {
        let end = start + len + END.len();
        return format!("{}{block}{}", &body[..start], &body[end..]);
    }
    let sep = if body.is_empty() || body.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{body}{sep}\n{block}\n")
}

/// An optional field of a block, written as text (empty for none), parsed into `T`: a
/// refusal gives the value as read (its first 80 characters) and why.
pub fn optional<T, E: std::fmt::Display>(
    value: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, (String, String)> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(value)
        .map(Some)
        .map_err(|e| (value.chars().take(80).collect(), e.to_string()))
}

/// An optional value as a block writes it: its text, empty for none.
pub fn text<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map(ToString::to_string).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const M: &str = "<!-- tugboat:state ";

    #[test]
    fn a_value_holding_the_marker_or_the_end_is_escaped_so_the_body_keeps_one_block() {
        // Found by the state_block fuzz target.
        let tricky = json!({"text": format!("{M}x -->")});
        let body = write("Some text", M, &tricky);
        assert_eq!(body.matches(M).count(), 1);
        assert_eq!(read::<Value>(&body, M), Some(tricky));
    }

    #[test]
    fn a_written_block_reads_back_and_a_rewrite_replaces_it_in_place() {
        let body = write("Some text", M, &json!({"a": 1}));
        assert_eq!(read::<Value>(&body, M), Some(json!({"a": 1})));
        let again = write(&format!("{body}after\n"), M, &json!({"a": 2}));
        assert_eq!(read::<Value>(&again, M), Some(json!({"a": 2})));
        assert_eq!(again.matches(M).count(), 1);
        assert!(again.starts_with("Some text\n") && again.ends_with("after\n"));
    }

    #[test]
    fn a_value_holding_the_end_marker_cannot_end_the_block_early() {
        let body = write("", M, &json!({"from": "x -->y"}));
        assert_eq!(read::<Value>(&body, M), Some(json!({"from": "x -->y"})));
    }

    #[test]
    fn a_marker_quoted_above_tugboats_block_is_not_read_or_rewritten() {
        // A body written before quotes were made inert: the quote, then tugboat's block.
        let quote = "A commit said <!-- tugboat:state {\"a\": 9} --> once\n";
        let body = format!("{quote}\n{M}{{\"a\":1}} -->\n");
        assert_eq!(read::<Value>(&body, M), Some(json!({"a": 1})));
        let again = write(&body, M, &json!({"a": 2}));
        assert!(again.starts_with(quote), "{again}");
        assert_eq!(read::<Value>(&again, M), Some(json!({"a": 2})));
    }

    #[test]
    fn a_missing_or_broken_block_reads_as_none() {
        assert_eq!(read::<Value>("no block", M), None);
        assert_eq!(read::<Value>("<!-- tugboat:state {not json -->", M), None);
        assert_eq!(read::<Value>("<!-- tugboat:state {}", M), None);
    }
}
