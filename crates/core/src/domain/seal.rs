//! Seals on the bodies tugboat writes. A PR or issue body holding tugboat's blocks
//! (`<!-- tugboat:… -->`) ends with a seal: an HMAC-SHA256 of everything above it under a key
//! only tugboat has. Anyone with write access can edit the body of tugboat's own PR (its
//! `answered_through`, its image, a group member's outcome); an edit breaks the seal, and a
//! body whose seal does not open is read as if tugboat had written no block in it.
//!
//! Keys come as text (an SSM SecureString, a file or an environment variable):
//!
//! ```text
//! since 2026-12-05T21:40:00Z
//! key 3f1c…(at least 32 characters)
//! key 9a07…(the previous key, still accepted)
//! ```
//!
//! The first key seals; every key opens (a rotation puts the new key first and drops the old
//! one once every record was sealed again). A bare line is a key too, so the output of
//! `openssl rand -hex 32` is a valid key text. `since` is when sealing began: a record with
//! blocks and no seal at all, last changed before it, was written by an earlier tugboat and is
//! accepted (and then sealed); one changed after it was edited and is not.

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How the seal starts; it is the last line of a sealed body.
const SEAL: &str = "\n<!-- tugboat:seal ";
const END: &str = " -->";
/// What every block of tugboat's starts with.
const BLOCK: &str = "<!-- tugboat:";
/// Left where the blocks of a body whose seal did not open were: the record's state is lost
/// (see [`forgotten`]).
pub const FORGOTTEN: &str = "<!-- tugboat:forgotten -->";
/// What the MAC covers before the body: the format's version.
const DOMAIN: &[u8] = b"tugboat-seal-v1\n";
/// What the MAC of a file covers before its name and bytes (never a body's MAC).
const FILE_DOMAIN: &[u8] = b"tugboat-file-v1\n";
/// The shortest key accepted (32 characters: 128 bits of hex, more of anything else).
pub const MIN_KEY_LEN: usize = 32;

/// The keys that seal and open bodies.
#[derive(Clone)]
pub struct Keys {
    /// One HMAC per key, keyed and ready: the first seals; all open.
    keys: Vec<HmacSha256>,
    /// When sealing began: unsealed bodies last changed before it are an earlier tugboat's.
    pub since: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("keys", &self.keys.len())
            .field("since", &self.since)
            .finish()
    }
}

/// Why a key text was refused. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key text holds no key")]
    Empty,
    #[error("line {line}: a key is at least {MIN_KEY_LEN} characters, this one has {len}")]
    Short { line: usize, len: usize },
    #[error("line {line}: `since` is a time like 2026-12-05T21:40:00Z: {reason}")]
    Since { line: usize, reason: String },
    #[error("line {line}: `since` is given twice")]
    SinceTwice { line: usize },
    #[error("line {line}: expected `key <value>`, `since <time>` or a bare key")]
    Line { line: usize },
    #[error("line {line}: the key cannot key an HMAC")]
    Unusable { line: usize },
}

impl Keys {
    /// Parse a key text (the module's format).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        let mut since = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut words = l.split_whitespace();
            let (first, second, rest) = (words.next(), words.next(), words.next());
            match (first, second, rest) {
                (Some("since"), Some(at), None) => {
                    if since.is_some() {
                        return Err(KeyError::SinceTwice { line });
                    }
                    let at = DateTime::parse_from_rfc3339(at).map_err(|e| KeyError::Since {
                        line,
                        reason: e.to_string(),
                    })?;
                    since = Some(at.with_timezone(&Utc));
                }
                (Some("key"), Some(key), None) | (Some(key), None, None) => {
                    if key.len() < MIN_KEY_LEN {
                        return Err(KeyError::Short {
                            line,
                            len: key.len(),
                        });
                    }
                    let mac = HmacSha256::new_from_slice(key.as_bytes())
                        .map_err(|_| KeyError::Unusable { line })?;
                    keys.push(mac);
                }
                _ => return Err(KeyError::Line { line }),
            }
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys, since })
    }

    /// A new key text: `secret` (hex of fresh random bytes) as its only key, sealing from `now`.
    pub fn text(secret: &str, now: DateTime<Utc>) -> String {
        format!(
            "# tugboat's key for the records it keeps in GitHub (see docs/threat-model.md)\nsince {}\nkey {secret}\n",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }

    fn mac(key: &HmacSha256, body: &str) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(DOMAIN);
        mac.update(body.as_bytes());
        mac
    }

    /// `body` sealed with the first key (a seal it had is replaced; a body without blocks is
    /// returned as it is). A body that was [`forgotten`] and now holds a new block of
    /// tugboat's loses the [`FORGOTTEN`] mark: what the block says was written since.
    pub fn seal(&self, body: &str) -> String {
        let body = settled(body);
        if !body.contains(BLOCK) {
            return body;
        }
        let tag = Self::mac(&self.keys[0], &body).finalize().into_bytes();
        format!("{body}{SEAL}{}{END}", hex::encode(tag))
    }

    /// The seal of a file tugboat keeps outside bodies (a ledger file): hex of the HMAC of
    /// `bytes` under the first key, bound to the file's `name` so that one file's seal does
    /// not fit another.
    pub fn tag(&self, name: &str, bytes: &[u8]) -> String {
        hex::encode(
            Self::file_mac(&self.keys[0], name, bytes)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `tag` is the seal of file `name` holding `bytes` under one of the keys.
    pub fn verifies(&self, name: &str, bytes: &[u8], tag: &str) -> bool {
        hex::decode(tag).is_ok_and(|tag| {
            self.keys
                .iter()
                .any(|k| Self::file_mac(k, name, bytes).verify_slice(&tag).is_ok())
        })
    }

    fn file_mac(key: &HmacSha256, name: &str, bytes: &[u8]) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(FILE_DOMAIN);
        mac.update(name.as_bytes());
        mac.update(b"\n");
        mac.update(bytes);
        mac
    }

    /// Read `body`, last changed at `updated_at`: see [`Opened`].
    pub fn open(&self, body: &str, updated_at: Option<DateTime<Utc>>) -> Opened {
        if !body.contains(BLOCK) {
            return Opened::Plain;
        }
        let Some((inner, tag)) = split(body) else {
            return match (self.since, updated_at) {
                (Some(since), Some(at)) if at < since => Opened::Legacy,
                _ => Opened::Forged(forget(body)),
            };
        };
        let sealed_by_us = hex::decode(tag).is_ok_and(|tag| {
            self.keys
                .iter()
                .any(|k| Self::mac(k, inner).verify_slice(&tag).is_ok())
        });
        if sealed_by_us {
            Opened::Sealed(inner.to_owned())
        } else {
            Opened::Forged(forget(body))
        }
    }
}

/// What a body read back is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// It holds no block of tugboat's: nothing to check.
    Plain,
    /// Sealed under one of the keys: the body without its seal.
    Sealed(String),
    /// Blocks and no seal, last changed before sealing began: an earlier tugboat's record,
    /// read as it is (and to be sealed).
    Legacy,
    /// Blocks whose seal is missing or does not open: the body with every block of tugboat's
    /// taken out and [`FORGOTTEN`] in their place.
    Forged(String),
}

/// `body` as it is sealed: without a seal, and without [`FORGOTTEN`] when a new block of
/// tugboat's is in it; taken out until nothing changes (taking text out can join what is
/// around it), so that sealing what was sealed changes nothing.
fn settled(body: &str) -> String {
    let mut body = body.to_owned();
    loop {
        let mut next = unsealed(&body).to_owned();
        if let Some(at) = next.find(FORGOTTEN) {
            let rest = format!(
                "{}{}",
                next[..at].trim_end_matches('\n'),
                &next[at + FORGOTTEN.len()..]
            );
            if rest.contains(BLOCK) {
                next = rest;
            }
        }
        if next == body {
            return body;
        }
        body = next;
    }
}

/// `body` without its seal (the whole body when it has none).
pub fn unsealed(body: &str) -> &str {
    split(body).map_or(body, |(inner, _)| inner)
}

/// The body above the seal and the seal's tag, when the body ends with a seal.
fn split(body: &str) -> Option<(&str, &str)> {
    let at = body.rfind(SEAL)?;
    let tag = body[at + SEAL.len()..].trim_end().strip_suffix(END)?;
    (tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some((&body[..at], tag))
}

/// `body` with every block of tugboat's (and its seal) taken out, [`FORGOTTEN`] left once.
/// Taking a block out can join the text around it into a new marker (found by the seal fuzz
/// target: `<!-- tugboa` + block + `t:…`), so it goes on until none is left; each round
/// removes at least one marker's length, so it ends.
pub fn forget(body: &str) -> String {
    let mut text = body.to_owned();
    while text.contains(BLOCK) {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find(BLOCK) {
            out.push_str(&rest[..start]);
            rest = rest[start..]
                .find(END)
                .map_or("", |end| &rest[start + end + END.len()..]);
        }
        out.push_str(rest);
        text = out;
    }
    format!("{}\n\n{FORGOTTEN}", text.trim_end())
}

/// Whether `body` is one whose blocks were taken out because its seal did not open: what
/// tugboat recorded in it (e.g. which commands it answered) is lost and must not be guessed.
pub fn forgotten(body: &str) -> bool {
    body.contains(FORGOTTEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const KEY: &str = "0123456789abcdef0123456789abcdef"; // pragma: allowlist secret (a test key)
    const OLD: &str = "fedcba9876543210fedcba9876543210"; // pragma: allowlist secret (a test key)

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, h, 0, 0).unwrap()
    }

    fn keys() -> Keys {
        Keys::parse(&Keys::text(KEY, at(12))).unwrap()
    }

    const BODY: &str = "Promote x\n\n<!-- tugboat:state {\"answered_through\":7} -->\n";

    #[test]
    fn a_sealed_body_opens_to_exactly_what_was_sealed() {
        let k = keys();
        let sealed = k.seal(BODY);
        assert!(sealed.starts_with(BODY) && sealed.contains("<!-- tugboat:seal "));
        assert_eq!(
            k.open(&sealed, Some(at(13))),
            Opened::Sealed(BODY.to_owned())
        );
        // Sealing again replaces the seal rather than stacking one.
        assert_eq!(k.seal(&sealed), sealed);
        assert_eq!(unsealed(&sealed), BODY);
    }

    #[test]
    fn an_edited_block_breaks_the_seal_and_its_blocks_are_taken_out() {
        let k = keys();
        let sealed = k
            .seal(BODY)
            .replace("\"answered_through\":7", "\"answered_through\":99");
        let Opened::Forged(body) = k.open(&sealed, Some(at(13))) else {
            panic!("an edited body opened");
        };
        assert!(body.starts_with("Promote x") && !body.contains("answered_through"));
        assert!(forgotten(&body) && !body.contains("tugboat:seal"));
    }

    #[test]
    fn an_edit_anywhere_in_the_body_breaks_the_seal() {
        let k = keys();
        let sealed = k.seal(BODY).replace("Promote x", "Promote y");
        assert!(matches!(k.open(&sealed, None), Opened::Forged(_)));
    }

    #[test]
    fn a_seal_made_with_another_key_does_not_open() {
        let theirs = Keys::parse(OLD).unwrap();
        assert!(matches!(
            keys().open(&theirs.seal(BODY), None),
            Opened::Forged(_)
        ));
    }

    #[test]
    fn after_a_rotation_the_new_key_seals_and_the_old_key_still_opens() {
        let old = Keys::parse(OLD).unwrap();
        let rotated = Keys::parse(&format!("key {KEY}\nkey {OLD}\n")).unwrap();
        assert_eq!(
            rotated.open(&old.seal(BODY), None),
            Opened::Sealed(BODY.to_owned())
        );
        let new = Keys::parse(KEY).unwrap();
        assert_eq!(
            new.open(&rotated.seal(BODY), None),
            Opened::Sealed(BODY.to_owned())
        );
    }

    #[test]
    fn an_unsealed_body_is_an_earlier_tugboats_only_when_it_last_changed_before_sealing_began() {
        let k = keys();
        assert_eq!(k.open(BODY, Some(at(11))), Opened::Legacy);
        assert!(matches!(k.open(BODY, Some(at(12))), Opened::Forged(_)));
        assert!(matches!(k.open(BODY, None), Opened::Forged(_)));
        let no_since = Keys::parse(KEY).unwrap();
        assert!(matches!(
            no_since.open(BODY, Some(at(1))),
            Opened::Forged(_)
        ));
    }

    #[test]
    fn a_files_seal_fits_only_that_file_with_those_bytes_under_our_keys() {
        let k = keys();
        let tag = k.tag("claims.json", b"{}");
        assert!(k.verifies("claims.json", b"{}", &tag));
        assert!(!k.verifies("schedules.json", b"{}", &tag), "another file");
        assert!(!k.verifies("claims.json", b"{ }", &tag), "other bytes");
        assert!(!k.verifies("claims.json", b"{}", "not hex"));
        assert!(
            !Keys::parse(OLD)
                .unwrap()
                .verifies("claims.json", b"{}", &tag)
        );
        // A body's seal is never a file's, nor the other way round.
        assert_ne!(k.tag("x", b""), hex::encode([0u8; 32]));
    }

    #[test]
    fn taking_blocks_out_never_joins_the_text_around_them_into_a_new_block() {
        // Found by the seal fuzz target.
        let body = "x <!-- tugboa<!-- tugboat:forgotten -->t:state {} --> y";
        let Opened::Forged(out) = keys().open(body, None) else {
            panic!("an unsealed body opened");
        };
        assert!(!out.replace(FORGOTTEN, "").contains(BLOCK), "{out:?}");
    }

    #[test]
    fn a_body_without_blocks_needs_no_seal() {
        let k = keys();
        assert_eq!(k.open("Just words", None), Opened::Plain);
        assert_eq!(k.seal("Just words"), "Just words");
    }

    #[test]
    fn a_forgotten_body_stays_forgotten_until_tugboat_writes_a_block_into_it_again() {
        let k = keys();
        let Opened::Forged(lost) = k.open(BODY, None) else {
            panic!("an unsealed body opened");
        };
        // Written back as it is (a label change): still forgotten, now under tugboat's seal.
        let Opened::Sealed(kept) = k.open(&k.seal(&lost), None) else {
            panic!("tugboat's own seal did not open");
        };
        assert!(forgotten(&kept));
        // A new block written into it: what tugboat knows again, not forgotten.
        let renewed = format!("{kept}\n<!-- tugboat:state {{\"answered_through\":12}} -->\n");
        let Opened::Sealed(back) = k.open(&k.seal(&renewed), None) else {
            panic!("tugboat's own seal did not open");
        };
        assert!(
            !forgotten(&back) && back.contains("answered_through\":12"),
            "{back}"
        );
    }

    #[test]
    fn a_key_text_is_checked_line_by_line_without_repeating_a_key() {
        assert_eq!(Keys::parse("# only words\n").unwrap_err(), KeyError::Empty);
        let short = Keys::parse("since 2026-01-01T00:00:00Z\nkey shortsecret").unwrap_err();
        assert_eq!(short, KeyError::Short { line: 2, len: 11 });
        assert!(!short.to_string().contains("shortsecret"));
        assert!(matches!(
            Keys::parse(&format!("since yesterday\n{KEY}")),
            Err(KeyError::Since { line: 1, .. })
        ));
        assert_eq!(
            Keys::parse(&format!("key {KEY} extra")).unwrap_err(),
            KeyError::Line { line: 1 }
        );
        let k = keys();
        assert_eq!(k.since, Some(at(12)));
        assert!(!format!("{k:?}").contains(KEY));
    }
}
