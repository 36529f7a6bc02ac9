//! A YAML document as a tree of nodes that remember their byte spans in the source.
//!
//! Built on serde-saphyr's `Spanned`, which reports byte offsets that include a scalar's
//! quotes. The editors read values through this tree and splice new bytes at the spans.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A node of a YAML document.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    /// A scalar; its value as the parser resolved it (the raw text is read from the span).
    Scalar(String),
    Seq(Vec<SNode>),
    Map(Vec<(SNode, SNode)>),
}

pub type SNode = Spanned<Node>;

/// The byte range of a node in its source, when the parser knew it.
pub fn byte_range(n: &SNode) -> Option<std::ops::Range<usize>> {
    let span = n.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    Some(start..start + len)
}

/// Whether a node was reached through an alias (`*name`) or a merge key.
pub fn is_alias(n: &SNode) -> bool {
    n.referenced != n.defined
}

/// Where a node is used: the byte offset of the alias for a node reached through one, else
/// the node's own start.
pub fn site(n: &SNode) -> Option<usize> {
    usize::try_from(n.referenced.span().byte_offset()?).ok()
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&SNode> {
        match self {
            Self::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Node::Scalar(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SNode>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<SNode>()? {
            let v = map.next_value::<SNode>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// For a block scalar (`|` or `>`), the offset of its indicator. The parser's span of a
/// block scalar starts at its first content character, so the header is found by looking
/// back over blank lines to the line that ends with the indicator (and maybe a comment).
pub fn block_indicator(src: &str, n: &SNode) -> Option<usize> {
    let start = byte_range(n)?.start;
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    if !src[line_start..start].bytes().all(|b| b == b' ') {
        return None;
    }
    let mut end = line_start.checked_sub(1)?;
    loop {
        let prev_start = src[..end].rfind('\n').map_or(0, |i| i + 1);
        let line = src[prev_start..end].trim_end_matches('\r');
        let code = line.split(" #").next().unwrap_or(line).trim_end();
        if code.trim().is_empty() && !line.trim_start().starts_with('#') {
            end = prev_start.checked_sub(1)?;
            continue;
        }
        let token_start = code.rfind(' ').map_or(0, |i| i + 1);
        let token = &code[token_start..];
        let is_header = token.starts_with(['|', '>'])
            && token[1..]
                .bytes()
                .all(|b| b == b'-' || b == b'+' || b.is_ascii_digit());
        return is_header.then_some(prev_start + token_start);
    }
}

/// A parse error with its 1-based line and column, when the parser knew them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every document of a (possibly multi-document) YAML source.
pub fn parse_documents(src: &str) -> Result<Vec<SNode>, ParseError> {
    parse_raw(src).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| {
            (
                usize::try_from(l.line()).unwrap_or(0),
                usize::try_from(l.column()).unwrap_or(0),
            )
        });
        let text = e.to_string();
        let first = text.lines().next().unwrap_or(&text);
        // The parser's text repeats the position ("error: line 1 column 4: …"); keep the rest.
        let message = first.strip_prefix("error: ").unwrap_or(first);
        let message = match message.split_once(": ") {
            Some((pos, rest)) if pos.starts_with("line ") && pos.contains(" column ") => rest,
            _ => message,
        };
        ParseError {
            line,
            column,
            message: message.to_owned(),
        }
    })
}

fn parse_raw(src: &str) -> Result<Vec<SNode>, serde_saphyr::Error> {
    let opts = serde_saphyr::options! {
        // Manifests are small; keep the parser's own limits but never invent values.
        strict_booleans: true,
    };
    serde_saphyr::from_multiple_with_options(src, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(src: &str) -> Vec<String> {
        fn walk(src: &str, n: &SNode, out: &mut Vec<String>) {
            match &n.value {
                Node::Scalar(s) => {
                    let r = byte_range(n).unwrap();
                    out.push(format!(
                        "{s}=[{}]{}",
                        &src[r.clone()],
                        if is_alias(n) { "*" } else { "" }
                    ));
                }
                Node::Seq(items) => items.iter().for_each(|i| walk(src, i, out)),
                Node::Map(es) => es.iter().for_each(|(k, v)| {
                    walk(src, k, out);
                    walk(src, v, out)
                }),
                Node::Null => out.push("null".into()),
            }
        }
        let mut out = vec![];
        for d in parse_documents(src).unwrap() {
            walk(src, &d, &mut out);
        }
        out
    }

    #[test]
    fn spans_cover_the_scalar_with_its_quotes_and_nothing_else() {
        let src = "\u{feff}a: \"x:1\" # c\r\nb: 'y''z'   # k\r\nc: 1.10\n---\nd: &an plain # t\ne: *an\nf: [g, \"h\"]\n";
        assert_eq!(
            show(src),
            [
                "a=[a]",
                "x:1=[\"x:1\"]",
                "b=[b]",
                "y'z=['y''z']",
                "c=[c]",
                "1.1=[1.10]",
                "d=[d]",
                "plain=[plain]",
                "e=[e]",
                "plain=[plain]*",
                "f=[f]",
                "g=[g]",
                "h=[\"h\"]"
            ]
        );
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    fn indicators(src: &str) -> Vec<Option<String>> {
        let mut out = vec![];
        for d in parse_documents(src).unwrap() {
            if let Node::Map(es) = &d.value {
                for (_, v) in es {
                    out.push(block_indicator(src, v).map(|i| src[i..i + 2].to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn block_scalars_are_told_from_plain_scalars_on_their_own_line() {
        let src = "a: |-\n  x\nb:\n  plain\nc: >+ # note\n\n  folded\nd: \"q\"\n";
        assert_eq!(
            indicators(src),
            [Some("|-".into()), None, Some(">+".into()), None]
        );
    }
}
