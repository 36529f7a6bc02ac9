//! Outside text in what tugboat writes on GitHub. A commit summary, a git author's name, an
//! Argo CD message or a scanner's finding is written by someone tugboat does not trust; quoted
//! as it is, it could open an HTML comment (hiding the rest of a body, or forging one of
//! tugboat's `<!-- tugboat:… -->` blocks), close a code span, mention a person or a team, or
//! break a table. [`inert`] keeps its words and takes away those powers.

/// `s` inert, on one line, readable the same in GitHub Markdown, a Slack message and a log:
/// the characters that carry Markdown's or HTML's powers become look-alikes that carry none
/// (`<` `‹`, `>` `›`, `` ` `` `ˋ`, `|` `¦`), an `@` is followed by a zero-width space so
/// that no mention notifies anyone, and line breaks become spaces. Look-alikes rather than
/// HTML character references, because the same text also goes to Slack, which would show a
/// reference as it is.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push('\u{2039}'),
            '>' => out.push('\u{203A}'),
            '`' => out.push('\u{02CB}'),
            '|' => out.push('\u{00A6}'),
            '@' => out.push_str("@\u{200B}"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_marker_can_neither_open_a_comment_nor_forge_a_block() {
        let quoted = inert("fix <!-- tugboat:hold {\"x\":1} --> and <!-- tugboat:");
        assert!(
            !quoted.contains("<!--") && !quoted.contains("-->"),
            "{quoted}"
        );
    }

    #[test]
    fn a_quoted_mention_notifies_nobody_and_a_backtick_closes_no_code_span() {
        let quoted = inert("ping @salon/platform-leads and `rm -rf` | x");
        assert!(!quoted.contains("@salon") && !quoted.contains('`') && !quoted.contains('|'));
        assert!(quoted.contains("@\u{200B}salon/platform-leads"), "{quoted}");
    }

    #[test]
    fn plain_words_are_kept_and_lines_are_joined() {
        assert_eq!(
            inert("Bump user_service\nto 1.2.0"),
            "Bump user_service to 1.2.0"
        );
    }
}
