//! What an EventBridge event from ECR or Inspector, delivered through SQS, tells tugboat. The
//! body is untrusted input: it is parsed into a closed set of events or refused with a reason
//! that names the field. An event is a hint that a service should look again, never evidence:
//! the gate still reads the findings from ECR.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::image::{Digest, Tag, printable};

/// The largest message body read (EventBridge events are a few kilobytes; SQS allows 256 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Something that happened to an image in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `ECR Image Action`, `PUSH`: a new image (or a tag moved to one).
    Pushed,
    /// `ECR Image Action`, `DELETE`: an image or a tag is gone.
    Deleted,
    /// `ECR Image Scan`: a basic scan finished.
    Scanned,
    /// `Inspector2 Scan` or `Inspector2 Finding`: an enhanced scan has news for the image.
    Inspected,
}

impl Change {
    /// A bounded label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pushed => "push",
            Self::Deleted => "delete",
            Self::Scanned => "scan",
            Self::Inspected => "inspector",
        }
    }
}

/// An event as tugboat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// EventBridge's event id (SQS may deliver a message twice; the id stays).
    pub id: String,
    pub account: String,
    pub region: String,
    pub time: DateTime<Utc>,
    /// The repository's name within its registry (`team/api`), never an ARN.
    pub repository: String,
    pub change: Change,
    pub digest: Option<Digest>,
    pub tags: Vec<Tag>,
}

/// Why a message is not an event tugboat uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than [`MAX_BODY`] (its size).
    Oversized(usize),
    /// Not JSON, or a field missing or of the wrong kind (which, and why).
    Malformed(String),
    /// A `detail-type` (or an action) tugboat does not use.
    Unused(String),
}

impl Refusal {
    /// A bounded label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Oversized(_) => "oversized",
            Self::Malformed(_) => "malformed",
            Self::Unused(_) => "unused",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Oversized(n) => write!(f, "a body of {n} bytes, over the {MAX_BODY}-byte limit"),
            Self::Malformed(why) => write!(f, "not an EventBridge event: {why}"),
            Self::Unused(why) => write!(f, "not used: {why}"),
        }
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, Refusal> {
    match v.pointer(pointer) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Refusal::Malformed(format!(
            "`{pointer}` is {}, not a string",
            kind(other)
        ))),
        None => Err(Refusal::Malformed(format!("`{pointer}` is missing"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Read one SQS message body as an EventBridge event from ECR or Inspector.
pub fn parse(body: &str) -> Result<Event, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::Oversized(body.len()));
    }
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Refusal::Malformed(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(Refusal::Malformed(format!(
            "the body is {}, not an object",
            kind(&v)
        )));
    }
    let detail_type = text(&v, "/detail-type")?;
    let id = text(&v, "/id")?;
    if id.is_empty() {
        return Err(Refusal::Malformed("`/id` is empty".into()));
    }
    let time = text(&v, "/time")?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|e| Refusal::Malformed(format!("`/time` '{}': {e}", printable(time))))?
        .with_timezone(&Utc);
    let (account, region) = (text(&v, "/account")?, text(&v, "/region")?);
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed(format!(
            "`/account` '{}' is not a 12-digit AWS account id",
            printable(account)
        )));
    }
    let region_like = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_like {
        return Err(Refusal::Malformed(format!(
            "`/region` '{}' is not an AWS region",
            printable(region)
        )));
    }
    let (change, repository, digest, tags) = match detail_type {
        "ECR Image Action" => image_action(&v)?,
        "ECR Image Scan" => image_scan(&v)?,
        "Inspector2 Scan" => inspector_scan(&v)?,
        "Inspector2 Finding" => inspector_finding(&v)?,
        other => {
            return Err(Refusal::Unused(format!(
                "detail-type '{}'",
                printable(other)
            )));
        }
    };
    Ok(Event {
        id: printable(id),
        account: account.to_owned(),
        region: region.to_owned(),
        time,
        repository,
        change,
        digest,
        tags,
    })
}

type Parts = (Change, String, Option<Digest>, Vec<Tag>);

fn digest_at(v: &Value, pointer: &str) -> Result<Option<Digest>, Refusal> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => {
            let s = text(v, pointer)?;
            Digest::parse(s)
                .map(Some)
                .map_err(|e| Refusal::Malformed(format!("`{pointer}`: {e}")))
        }
    }
}

fn tags_at(v: &Value, pointer: &str) -> Result<Vec<Tag>, Refusal> {
    let list = match v.pointer(pointer) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(Refusal::Malformed(format!(
                "`{pointer}` is {}, not an array",
                kind(other)
            )));
        }
    };
    list.iter()
        .map(|t| match t {
            Value::String(s) => {
                Tag::parse(s).map_err(|e| Refusal::Malformed(format!("`{pointer}`: {e}")))
            }
            other => Err(Refusal::Malformed(format!(
                "`{pointer}` holds {}, not a tag",
                kind(other)
            ))),
        })
        .collect()
}

/// A repository name, or the name within an ECR repository ARN
/// (`arn:aws:ecr:<region>:<account>:repository/<name>`), as Inspector gives it.
fn repository_name(s: &str, pointer: &str) -> Result<String, Refusal> {
    let name = match s.strip_prefix("arn:") {
        Some(_) => s
            .split_once(":repository/")
            .map(|(_, n)| n)
            .ok_or_else(|| {
                Refusal::Malformed(format!(
                    "`{pointer}` '{}' is not an ECR repository ARN",
                    printable(s)
                ))
            })?,
        None => s,
    };
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Refusal::Malformed(format!(
            "`{pointer}` '{}' is not an ECR repository name",
            printable(name)
        )))
    }
}

fn image_action(v: &Value) -> Result<Parts, Refusal> {
    let result = v.pointer("/detail/result").and_then(Value::as_str);
    if result.is_some_and(|r| r != "SUCCESS") {
        return Err(Refusal::Unused(format!(
            "an image action whose result is '{}'",
            printable(result.unwrap_or_default())
        )));
    }
    let change = match text(v, "/detail/action-type")? {
        "PUSH" => Change::Pushed,
        "DELETE" => Change::Deleted,
        other => {
            return Err(Refusal::Unused(format!(
                "image action '{}'",
                printable(other)
            )));
        }
    };
    let repository = repository_name(
        text(v, "/detail/repository-name")?,
        "/detail/repository-name",
    )?;
    let tags = match v.pointer("/detail/image-tag") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(_) => {
            let t = text(v, "/detail/image-tag")?;
            vec![
                Tag::parse(t)
                    .map_err(|e| Refusal::Malformed(format!("`/detail/image-tag`: {e}")))?,
            ]
        }
    };
    Ok((
        change,
        repository,
        digest_at(v, "/detail/image-digest")?,
        tags,
    ))
}

fn image_scan(v: &Value) -> Result<Parts, Refusal> {
    let status = text(v, "/detail/scan-status")?;
    if status != "COMPLETE" {
        return Err(Refusal::Unused(format!(
            "a scan whose status is '{}'",
            printable(status)
        )));
    }
    let repository = repository_name(
        text(v, "/detail/repository-name")?,
        "/detail/repository-name",
    )?;
    let digest = digest_at(v, "/detail/image-digest")?;
    Ok((
        Change::Scanned,
        repository,
        digest,
        tags_at(v, "/detail/image-tags")?,
    ))
}

fn inspector_scan(v: &Value) -> Result<Parts, Refusal> {
    let repository = repository_name(
        text(v, "/detail/repository-name")?,
        "/detail/repository-name",
    )?;
    let digest = digest_at(v, "/detail/image-digest")?;
    Ok((
        Change::Inspected,
        repository,
        digest,
        tags_at(v, "/detail/image-tags")?,
    ))
}

fn inspector_finding(v: &Value) -> Result<Parts, Refusal> {
    let image = v
        .pointer("/detail/resources")
        .and_then(Value::as_array)
        .and_then(|r| {
            r.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("AWS_ECR_CONTAINER_IMAGE"))
        })
        .ok_or_else(|| Refusal::Unused("an Inspector finding on no ECR image".into()))?;
    let details = image
        .pointer("/details/awsEcrContainerImage")
        .ok_or_else(|| Refusal::Malformed("`awsEcrContainerImage` is missing".into()))?;
    let repository = repository_name(text(details, "/repositoryName")?, "repositoryName")?;
    let digest = digest_at(details, "/imageHash")?;
    Ok((
        Change::Inspected,
        repository,
        digest,
        tags_at(details, "/imageTags")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234aaaa";

    /// The push event of the Amazon ECR user guide ("Event for a completed image push").
    fn push() -> String {
        format!(
            r#"{{"version": "0", "id": "13cde686-328b-6117-af20-0e5566167482",
               "detail-type": "ECR Image Action", "source": "aws.ecr", "account": "123456789012",
               "time": "2019-11-16T01:54:34Z", "region": "us-west-2", "resources": [],
               "detail": {{"result": "SUCCESS", "repository-name": "my-repository-name",
                           "image-digest": "{DIGEST}", "action-type": "PUSH", "image-tag": "latest"}}}}"#
        )
    }

    #[test]
    fn the_documented_push_event_is_a_push_of_its_repository_tag_and_digest() {
        let e = parse(&push()).unwrap();
        assert_eq!(e.change, Change::Pushed);
        assert_eq!(e.repository, "my-repository-name");
        assert_eq!(e.digest.unwrap().as_str(), DIGEST);
        assert_eq!(e.tags, vec![Tag::parse("latest").unwrap()]);
        assert_eq!(
            (e.account.as_str(), e.region.as_str()),
            ("123456789012", "us-west-2")
        );
        assert_eq!(e.id, "13cde686-328b-6117-af20-0e5566167482");
    }

    #[test]
    fn scans_deletions_and_inspector_events_name_their_image() {
        let scan = format!(
            r#"{{"id": "85fc3613", "detail-type": "ECR Image Scan", "source": "aws.ecr",
               "account": "123456789012", "time": "2019-10-29T02:36:48Z", "region": "us-east-1",
               "detail": {{"scan-status": "COMPLETE", "repository-name": "team/api",
                           "finding-severity-counts": {{"CRITICAL": 10, "MEDIUM": 9}},
                           "image-digest": "{DIGEST}", "image-tags": []}}}}"#
        );
        let e = parse(&scan).unwrap();
        assert_eq!(
            (e.change, e.repository.as_str()),
            (Change::Scanned, "team/api")
        );
        let delete = push().replace("PUSH", "DELETE");
        assert_eq!(parse(&delete).unwrap().change, Change::Deleted);
        let inspector = format!(
            r#"{{"id": "739c0d3c", "detail-type": "Inspector2 Scan", "source": "aws.inspector2",
               "account": "123456789012", "time": "2021-12-03T18:03:16Z", "region": "us-east-2",
               "detail": {{"scan-status": "INITIAL_SCAN_COMPLETE",
                 "repository-name": "arn:aws:ecr:us-east-2:123456789012:repository/amazon/inspector-scan",
                 "finding-severity-counts": {{"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0}},
                 "image-digest": "{DIGEST}", "image-tags": ["latest"]}}}}"#
        );
        let e = parse(&inspector).unwrap();
        assert_eq!(
            (e.change, e.repository.as_str()),
            (Change::Inspected, "amazon/inspector-scan")
        );
        let finding = format!(
            r#"{{"id": "f1", "detail-type": "Inspector2 Finding", "account": "123456789012",
               "time": "2023-01-19T22:46:15Z", "region": "us-east-1",
               "detail": {{"severity": "HIGH", "status": "ACTIVE", "resources": [{{
                 "type": "AWS_ECR_CONTAINER_IMAGE", "id": "arn:aws:ecr:us-east-1:123456789012:repository/team/api/{DIGEST}",
                 "details": {{"awsEcrContainerImage": {{"repositoryName": "team/api",
                   "imageHash": "{DIGEST}", "imageTags": ["1.2.0"], "registry": "123456789012"}}}}}}]}}}}"#
        );
        let e = parse(&finding).unwrap();
        assert_eq!(e.repository, "team/api");
        assert_eq!(e.tags, vec![Tag::parse("1.2.0").unwrap()]);
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field_and_the_value() {
        assert!(
            matches!(parse("{"), Err(Refusal::Malformed(m)) if m.starts_with("the body is not JSON"))
        );
        assert_eq!(
            parse("[]"),
            Err(Refusal::Malformed(
                "the body is an array, not an object".into()
            ))
        );
        assert_eq!(
            parse(&push().replace("\"id\": \"13cde686-328b-6117-af20-0e5566167482\",", "")),
            Err(Refusal::Malformed("`/id` is missing".into()))
        );
        assert_eq!(
            parse(&push().replace("ECR Image Action", "EC2 Instance State-change Notification")),
            Err(Refusal::Unused(
                "detail-type 'EC2 Instance State-change Notification'".into()
            ))
        );
        assert_eq!(
            parse(&push().replace(DIGEST, "sha256:short"))
                .unwrap_err()
                .as_str(),
            "malformed"
        );
        assert!(matches!(
            parse(&push().replace("my-repository-name", "Bad Name")),
            Err(Refusal::Malformed(m)) if m.contains("'Bad Name' is not an ECR repository name")
        ));
        assert!(matches!(
            parse(&push().replace("2019-11-16T01:54:34Z", "yesterday")),
            Err(Refusal::Malformed(m)) if m.starts_with("`/time` 'yesterday'")
        ));
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY));
        assert_eq!(parse(&big).unwrap_err().as_str(), "oversized");
        assert_eq!(
            parse(&push().replace("13cde686-328b-6117-af20-0e5566167482", "")),
            Err(Refusal::Malformed("`/id` is empty".into())),
            "found by the fuzz target: an event without an id cannot be told from its redeliveries"
        );
        let failed = push().replace("SUCCESS", "FAILURE");
        assert!(matches!(parse(&failed), Err(Refusal::Unused(_))));
        assert_eq!(
            parse(&push().replace("123456789012", "12345\\n")),
            Err(Refusal::Malformed(
                "`/account` '12345\\n' is not a 12-digit AWS account id".into()
            ))
        );
        assert!(matches!(
            parse(&push().replace("us-west-2", "US West")),
            Err(Refusal::Malformed(m)) if m == "`/region` 'US West' is not an AWS region"
        ));
    }
}
