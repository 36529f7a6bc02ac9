//! Argo CD's `AccountService.CanI` as gRPC-Web bytes: the request tugboat sends and the
//! reading of the answer, as `argocd --grpc-web account can-i sync applications
//! <project>/<app>` asks it.
//!
//! Why not REST: an application's RBAC object is `<project>/<app>`, and Argo CD's REST
//! gateway routes on the decoded path, so `…/can-i/applications/sync/default%2Fapp` has a
//! segment too many and matches no route (server/server.go unescapes a `%2F` back only for
//! the clusters', repositories' and repocreds' paths: its `bug21955Workaround`). A request
//! with `Content-Type: application/grpc-web+proto` goes to its gRPC-Web handler instead
//! (server/server.go, `handlerSwitcher.contentTypeToHandler`).
//!
//! The wire (grpc/grpc, doc/PROTOCOL-WEB.md): a body of frames, each a flag byte (`0x00` a
//! message, `0x80` the trailers) and a 4-byte big-endian length; the status is
//! `grpc-status` in the headers (a trailers-only answer) or in the trailers frame. The
//! messages (server/account/account.proto): `CanIRequest { string resource = 1; string
//! action = 2; string subresource = 3; }` and `CanIResponse { string value = 1; }`, which
//! is `yes` or `no`.

/// The request's `Content-Type`.
pub const CONTENT_TYPE: &str = "application/grpc-web+proto";

/// The method's path.
pub const CAN_I_PATH: &str = "/account.AccountService/CanI";

/// The largest answer read (a `CanIResponse` is a few bytes).
pub const MAX_ANSWER: usize = 64 * 1024;

/// The framed `CanIRequest`.
pub fn can_i_request(resource: &str, action: &str, subresource: &str) -> Vec<u8> {
    let mut message = Vec::new();
    for (field, value) in [(1u8, resource), (2, action), (3, subresource)] {
        message.push((field << 3) | 2); // length-delimited
        varint(&mut message, value.len() as u64);
        message.extend_from_slice(value.as_bytes());
    }
    let mut framed = vec![0x00];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// What a call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `CanIResponse.value`.
    Value(String),
    /// A gRPC status other than OK: its code and message.
    Status(u32, String),
}

/// Reads an answer: `header_status` is the `grpc-status` header with `grpc-message` (a
/// trailers-only answer), `body` the frames. An error says what in the bytes is wrong.
pub fn can_i_answer(header_status: Option<(u32, String)>, body: &[u8]) -> Result<Answer, String> {
    if let Some((code, message)) = header_status.filter(|(code, _)| *code != 0) {
        return Ok(Answer::Status(code, clip(&message)));
    }
    if body.len() > MAX_ANSWER {
        return Err(format!(
            "an answer of {} bytes (at most {MAX_ANSWER})",
            body.len()
        ));
    }
    let mut value = None;
    let mut rest = body;
    while !rest.is_empty() {
        let (flag, payload, after) = frame(rest)?;
        rest = after;
        if flag & 0x80 != 0 {
            if let Some((code, message)) = trailers(payload)?.filter(|(c, _)| *c != 0) {
                return Ok(Answer::Status(code, message));
            }
        } else if flag == 0 {
            value = Some(value_field(payload)?);
        } else {
            return Err(format!(
                "a frame flagged {flag:#04x} (compressed or unknown)"
            ));
        }
    }
    value
        .map(Answer::Value)
        .ok_or_else(|| "no message and no status in the answer".to_owned())
}

/// One frame: its flag, its payload and what follows it.
fn frame(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let Some((head, rest)) = bytes.split_first_chunk::<5>() else {
        return Err(format!("a frame header cut short ({} bytes)", bytes.len()));
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() < len {
        return Err(format!(
            "a frame of {len} bytes with {} left in the answer",
            rest.len()
        ));
    }
    Ok((head[0], &rest[..len], &rest[len..]))
}

/// The trailers frame's `grpc-status` and `grpc-message` (HTTP/1 header lines).
fn trailers(payload: &[u8]) -> Result<Option<(u32, String)>, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "trailers that are not text")?;
    let mut code = None;
    let mut message = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a trailer line without a colon: {:?}", clip(line)))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "grpc-status" => {
                code = Some(value.trim().parse().map_err(|_| {
                    format!("grpc-status {:?} is not a number", clip(value.trim()))
                })?);
            }
            "grpc-message" => message = clip(value.trim()),
            _ => {}
        }
    }
    Ok(code.map(|c| (c, message)))
}

/// Field 1 of a `CanIResponse` (empty when absent, as proto3 omits an empty string);
/// other fields are skipped, as a protobuf reader does.
fn value_field(mut message: &[u8]) -> Result<String, String> {
    let mut value = String::new();
    while !message.is_empty() {
        let key = read_varint(&mut message)?;
        match key & 7 {
            0 => {
                read_varint(&mut message)?;
            }
            1 => message = skip(message, 8)?,
            5 => message = skip(message, 4)?,
            2 => {
                let len = usize::try_from(read_varint(&mut message)?)
                    .map_err(|_| "a field longer than memory")?;
                let (bytes, rest) = (message.get(..len), message.get(len..));
                let (Some(bytes), Some(rest)) = (bytes, rest) else {
                    return Err(format!("a field of {len} bytes past the message's end"));
                };
                if key >> 3 == 1 {
                    value = String::from_utf8(bytes.to_vec())
                        .map_err(|_| "CanIResponse.value is not UTF-8")?;
                }
                message = rest;
            }
            wire => {
                return Err(format!(
                    "a field of wire type {wire}, which CanIResponse has not"
                ));
            }
        }
    }
    Ok(value)
}

/// At most 200 characters of `text`, control characters dropped: what an error or a log
/// line may carry of what the other side wrote.
fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn skip(bytes: &[u8], n: usize) -> Result<&[u8], String> {
    bytes
        .get(n..)
        .ok_or_else(|| format!("a fixed field of {n} bytes past the message's end"))
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err("a varint cut short".to_owned());
        };
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("a varint of more than 10 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_request_is_one_frame_of_the_three_fields_in_order() {
        let r = can_i_request("applications", "sync", "default/user-service-prod");
        assert_eq!(r[0], 0);
        let len = u32::from_be_bytes([r[1], r[2], r[3], r[4]]) as usize;
        assert_eq!(len, r.len() - 5);
        let mut want = vec![0x0a, 12];
        want.extend_from_slice(b"applications");
        want.extend_from_slice(&[0x12, 4]);
        want.extend_from_slice(b"sync");
        want.extend_from_slice(&[0x1a, 25]);
        want.extend_from_slice(b"default/user-service-prod");
        assert_eq!(&r[5..], &want[..]);
    }

    #[test]
    fn a_long_subresource_gets_a_two_byte_length() {
        let long = "p/".to_owned() + &"a".repeat(200);
        let r = can_i_request("applications", "sync", &long);
        let at = 5 + 2 + 12 + 2 + 4;
        assert_eq!((r[at], r[at + 1], r[at + 2]), (0x1a, 0xca, 0x01));
    }

    #[test]
    fn an_answer_of_a_message_and_ok_trailers_is_its_value() {
        let mut body = framed(0, b"\x0a\x03yes");
        body.extend(framed(0x80, b"grpc-status: 0\r\ngrpc-message: \r\n"));
        assert_eq!(can_i_answer(None, &body), Ok(Answer::Value("yes".into())));
        let body = framed(0, b"\x0a\x02no");
        assert_eq!(can_i_answer(None, &body), Ok(Answer::Value("no".into())));
    }

    #[test]
    fn a_status_in_the_headers_or_the_trailers_is_the_answer() {
        assert_eq!(
            can_i_answer(Some((16, "invalid session".into())), b""),
            Ok(Answer::Status(16, "invalid session".into()))
        );
        let body = framed(
            0x80,
            b"Grpc-Status: 7\r\ngrpc-message: permission denied\r\n",
        );
        assert_eq!(
            can_i_answer(Some((0, String::new())), &body),
            Ok(Answer::Status(7, "permission denied".into()))
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_an_empty_message_is_an_empty_value() {
        let body = framed(0, b"\x10\x96\x01\x0a\x03yes\x1d\x01\x02\x03\x04");
        assert_eq!(can_i_answer(None, &body), Ok(Answer::Value("yes".into())));
        assert_eq!(
            can_i_answer(None, &framed(0, b"")),
            Ok(Answer::Value(String::new()))
        );
    }

    #[test]
    fn bytes_cut_short_or_malformed_are_errors_that_say_what() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "no message and no status"),
            (b"\x00\x00\x00", "cut short"),
            (b"\x00\x00\x00\x00\x09\x0a", "9 bytes with 1 left"),
            (b"\x01\x00\x00\x00\x00", "compressed or unknown"),
            (b"\x00\x00\x00\x00\x02\x0a\x05", "past the message's end"),
            (b"\x00\x00\x00\x00\x01\x0b", "wire type 3"),
        ];
        for (body, says) in cases {
            let e = can_i_answer(None, body).unwrap_err();
            assert!(e.contains(says), "{body:?}: {e}");
        }
        let e = can_i_answer(None, &framed(0x80, b"grpc-status: x\r\n")).unwrap_err();
        assert!(e.contains("\"x\" is not a number"), "{e}");
    }
}
