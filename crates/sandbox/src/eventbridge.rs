//! A stand-in for EventBridge's default event bus (AWS JSON 1.1, `X-Amz-Target: AWSEvents.*`):
//! the rules of manifests/aws/events.cfn.yaml, each sending what its pattern matches to the
//! events queue, and the three read-only operations `tugboat doctor` asks —
//! `ListRuleNamesByTarget`, `DescribeRule` and `TestEventPattern`. Every ECR and Inspector event
//! the AWS stand-in makes reaches the queue only through a rule that matches it, as on AWS: an
//! event "that matches an event pattern of a rule" is sent to the rule's targets (EventBridge
//! user guide, "Rules in Amazon EventBridge"), once per matching rule.
//!
//! The pattern matcher follows "Creating event patterns" and "Comparison operators for use in
//! event patterns" (EventBridge user guide): a field of the pattern matches when the event has
//! it and one of the listed values or operators matches it (any element, for an array in the
//! event); nested objects match field by field; `$or` matches when any branch does. Operators:
//! exact values, `prefix`, `suffix` (both also with `equals-ignore-case`), `anything-but`
//! (values, `prefix`, `suffix`, `wildcard`), `numeric`, `exists`, `equals-ignore-case` and
//! `wildcard`; `cidr` is refused by name (the sandbox does not model it).

use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tugboat::clock::Clock as _;

use super::SandboxClock;
use super::aws::REGISTRY_ID;
use super::sqs::{EVENTS_QUEUE, REGION, Sqs};

/// One rule on the default bus.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The event pattern (JSON).
    pub pattern: String,
    /// The ARNs of its targets.
    pub targets: Vec<String>,
}

/// The rules of manifests/aws/events.cfn.yaml, as its stack makes them, targeting the events
/// queue.
fn stack_rules() -> Vec<Rule> {
    let queue = queue_arn(EVENTS_QUEUE);
    let rule = |name: &str, pattern: Value| Rule {
        name: name.to_owned(),
        state: "ENABLED".into(),
        pattern: pattern.to_string(),
        targets: vec![queue.clone()],
    };
    vec![
        rule(
            "tugboat-ecr-image-action",
            json!({"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
                   "detail": {"action-type": ["PUSH", "DELETE"], "result": ["SUCCESS"]}}),
        ),
        rule(
            "tugboat-ecr-image-scan",
            json!({"source": ["aws.ecr"], "detail-type": ["ECR Image Scan"],
                   "detail": {"scan-status": ["COMPLETE"]}}),
        ),
        rule(
            "tugboat-inspector",
            json!({"source": ["aws.inspector2"], "detail-type": ["Inspector2 Scan", "Inspector2 Finding"]}),
        ),
    ]
}

/// The ARN of the sandbox's queue `name`.
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{REGISTRY_ID}:{name}")
}

/// The shared state of the EventBridge stand-in.
#[derive(Clone)]
pub struct EventBridge {
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Every call answered `AccessDeniedException` (a role without the `events:` grants).
    denied: Arc<std::sync::atomic::AtomicBool>,
    sqs: Sqs,
    clock: SandboxClock,
}

impl EventBridge {
    /// The bus with the stack's rules, delivering to `sqs`, stamping events from `clock`.
    pub fn new(sqs: Sqs, clock: SandboxClock) -> Self {
        Self {
            rules: Arc::new(Mutex::new(stack_rules())),
            denied: Arc::default(),
            sqs,
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rules, for tests.
    pub fn rules(&self) -> Vec<Rule> {
        self.lock().clone()
    }

    /// Add rule `name` or replace its pattern and state (as `PutRule` would), keeping its
    /// targets; a new rule targets the events queue.
    pub fn put_rule(&self, name: &str, pattern: &Value, enabled: bool) {
        let state = if enabled { "ENABLED" } else { "DISABLED" }.to_owned();
        let mut rules = self.lock();
        match rules.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                r.pattern = pattern.to_string();
                r.state = state;
            }
            None => rules.push(Rule {
                name: name.to_owned(),
                state,
                pattern: pattern.to_string(),
                targets: vec![queue_arn(EVENTS_QUEUE)],
            }),
        }
    }

    /// Remove rule `name` (`DeleteRule`).
    pub fn delete_rule(&self, name: &str) {
        self.lock().retain(|r| r.name != name);
    }

    /// An event of `detail_type` from `source`, put on the bus as the service that makes it
    /// would: each enabled rule whose pattern matches sends it to its queue targets.
    pub fn put(&self, source: &str, detail_type: &str, resources: Vec<String>, detail: Value) {
        let id = self.sqs.next_event_id(detail_type);
        let event = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": source,
            "account": REGISTRY_ID,
            "time": self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": REGION,
            "resources": resources,
            "detail": detail,
        });
        let targets: Vec<String> = self
            .lock()
            .iter()
            .filter(|r| r.state == "ENABLED")
            .filter(|r| {
                serde_json::from_str(&r.pattern).is_ok_and(|p| matches(&p, &event) == Ok(true))
            })
            .flat_map(|r| r.targets.clone())
            .collect();
        let body = event.to_string();
        for arn in targets {
            if let Some(queue) = arn.strip_prefix(&format!("arn:aws:sqs:{REGION}:{REGISTRY_ID}:")) {
                self.sqs.send(queue, &body);
            }
        }
    }

    /// Answer every call `AccessDeniedException`, as EventBridge does a caller without the
    /// IAM grant ("AccessDeniedException: You do not have sufficient access to perform this
    /// action", EventBridge API reference, Common Errors), or serve again.
    pub fn deny(&self, denied: bool) {
        self.denied
            .store(denied, std::sync::atomic::Ordering::SeqCst);
    }

    /// One `AWSEvents.*` operation.
    pub fn handle(&self, op: &str, req: &Value) -> Response {
        if self.denied.load(std::sync::atomic::Ordering::SeqCst) {
            return error(
                "AccessDeniedException",
                &format!("User is not authorized to perform: events:{op}"),
            );
        }
        match op {
            "ListRuleNamesByTarget" => self.list_by_target(req),
            "DescribeRule" => self.describe(req),
            "TestEventPattern" => test_event_pattern(req),
            other => error(
                "UnknownOperationException",
                &format!("the sandbox's EventBridge does not implement {other}"),
            ),
        }
    }

    /// "Lists the rules for the specified target" (API reference, ListRuleNamesByTarget):
    /// `RuleNames`, paged by `Limit` (1–100) and `NextToken`.
    fn list_by_target(&self, req: &Value) -> Response {
        let Some(target) = req.get("TargetArn").and_then(Value::as_str) else {
            return error("ValidationException", "TargetArn is required");
        };
        let names: Vec<String> = self
            .lock()
            .iter()
            .filter(|r| r.targets.iter().any(|t| t == target))
            .map(|r| r.name.clone())
            .collect();
        let limit = req
            .get("Limit")
            .and_then(Value::as_u64)
            .map_or(100, |l| usize::try_from(l.clamp(1, 100)).unwrap_or(100));
        let start: usize = req
            .get("NextToken")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let end = (start + limit).min(names.len());
        let mut out = json!({"RuleNames": names.get(start..end).unwrap_or_default()});
        if end < names.len() {
            out["NextToken"] = json!(end.to_string());
        }
        ok(out)
    }

    /// "Describes the specified rule" (API reference, DescribeRule): `ResourceNotFoundException`
    /// for a rule that does not exist.
    fn describe(&self, req: &Value) -> Response {
        let name = req.get("Name").and_then(Value::as_str).unwrap_or_default();
        let rules = self.lock();
        let Some(r) = rules.iter().find(|r| r.name == name) else {
            return error(
                "ResourceNotFoundException",
                &format!("Rule {name} does not exist on EventBus default."),
            );
        };
        ok(json!({
            "Name": r.name,
            "Arn": format!("arn:aws:events:{REGION}:{REGISTRY_ID}:rule/{}", r.name),
            "EventPattern": r.pattern,
            "State": r.state,
            "EventBusName": "default",
            "CreatedBy": REGISTRY_ID,
        }))
    }
}

/// "Tests whether the specified event pattern matches the provided event" (API reference,
/// TestEventPattern); the event must carry `id`, `account`, `source`, `time`, `region`,
/// `resources` and `detail-type`, as that page requires.
fn test_event_pattern(req: &Value) -> Response {
    let parse = |key: &str| {
        req.get(key)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    };
    let Some(pattern) = parse("EventPattern").filter(Value::is_object) else {
        return error(
            "InvalidEventPatternException",
            "Event pattern is not valid JSON",
        );
    };
    let Some(event) = parse("Event").filter(Value::is_object) else {
        return error("ValidationException", "Event is not valid JSON");
    };
    let required = [
        "id",
        "account",
        "source",
        "time",
        "region",
        "resources",
        "detail-type",
    ];
    if let Some(missing) = required.iter().find(|k| event.get(**k).is_none()) {
        return error(
            "ValidationException",
            &format!("Parameter Event is not valid: field {missing} is missing"),
        );
    }
    match matches(&pattern, &event) {
        Ok(result) => ok(json!({ "Result": result })),
        Err(why) => error("InvalidEventPatternException", &why),
    }
}

/// Whether `event` matches `pattern`; an error for a pattern EventBridge would refuse (or one
/// the sandbox does not model).
pub fn matches(pattern: &Value, event: &Value) -> Result<bool, String> {
    let Value::Object(fields) = pattern else {
        return Err("an event pattern is a JSON object".into());
    };
    let mut all = true;
    for (key, want) in fields {
        let ok = if key == "$or" {
            let Value::Array(branches) = want else {
                return Err("$or takes a list of patterns".into());
            };
            let mut any = false;
            for b in branches {
                any |= matches(b, event)?;
            }
            any
        } else {
            field(want, event.get(key))?
        };
        all &= ok;
    }
    Ok(all)
}

/// One field of a pattern against the event's value at that field (`None`: absent).
fn field(want: &Value, got: Option<&Value>) -> Result<bool, String> {
    match want {
        Value::Object(_) => match got {
            Some(inner @ Value::Object(_)) => matches(want, inner),
            _ => matches(want, &Value::Object(Map::new())).map(|_| false),
        },
        Value::Array(options) => {
            let mut any = false;
            for option in options {
                any |= one(option, got)?;
            }
            Ok(any)
        }
        _ => Err(format!("a pattern's leaf is a list of values, not {want}")),
    }
}

/// One listed value or operator against the event's value (any element of an array).
fn one(option: &Value, got: Option<&Value>) -> Result<bool, String> {
    if let Value::Object(op) = option
        && let Some(exists) = op.get("exists")
    {
        let Some(exists) = exists.as_bool() else {
            return Err("exists takes true or false".into());
        };
        return Ok(got.is_some_and(|v| !v.is_object()) == exists);
    }
    let values: Vec<&Value> = match got {
        None => return Ok(false),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    let mut any = false;
    for v in values {
        any |= operator(option, v)?;
    }
    Ok(any)
}

fn operator(option: &Value, v: &Value) -> Result<bool, String> {
    let Value::Object(op) = option else {
        return Ok(equal(option, v));
    };
    let (Some((name, arg)), 1) = (op.iter().next(), op.len()) else {
        return Err(format!("an operator object has one key: {option}"));
    };
    let text = v.as_str();
    match name.as_str() {
        "prefix" | "suffix" => affix(name, arg, text),
        "equals-ignore-case" => {
            let want = arg.as_str().ok_or("equals-ignore-case takes a string")?;
            Ok(text.is_some_and(|t| t.to_lowercase() == want.to_lowercase()))
        }
        "wildcard" => {
            let want = arg.as_str().ok_or("wildcard takes a string")?;
            Ok(text.is_some_and(|t| wildcard(want, t)))
        }
        "anything-but" => match arg {
            Value::Object(_) => operator(arg, v).map(|m| !m),
            Value::Array(list) => Ok(!list.iter().any(|w| equal(w, v))),
            scalar => Ok(!equal(scalar, v)),
        },
        "numeric" => numeric(arg, v),
        "cidr" => Err("the sandbox does not model cidr matching".into()),
        other => Err(format!("unrecognized match type {other}")),
    }
}

fn affix(name: &str, arg: &Value, text: Option<&str>) -> Result<bool, String> {
    let (want, fold) = match arg {
        Value::String(s) => (s.clone(), false),
        Value::Object(o) => match o.get("equals-ignore-case").and_then(Value::as_str) {
            Some(s) => (s.to_owned(), true),
            None => return Err(format!("{name} takes a string or equals-ignore-case")),
        },
        _ => return Err(format!("{name} takes a string")),
    };
    let Some(text) = text else { return Ok(false) };
    let (text, want) = if fold {
        (text.to_lowercase(), want.to_lowercase())
    } else {
        (text.to_owned(), want)
    };
    Ok(if name == "prefix" {
        text.starts_with(&want)
    } else {
        text.ends_with(&want)
    })
}

/// Exact matching: strings as strings, numbers by value, `null` and booleans as themselves.
fn equal(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == got,
    }
}

/// `*` matches any run of characters (the guide's wildcard operator).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `{"numeric": [">", 0, "<=", 5]}`: each comparison holds.
fn numeric(arg: &Value, v: &Value) -> Result<bool, String> {
    let Some(list) = arg.as_array().filter(|l| !l.is_empty() && l.len() % 2 == 0) else {
        return Err("numeric takes pairs of an operator and a number".into());
    };
    let Some(x) = v.as_f64() else {
        return Ok(false);
    };
    let mut all = true;
    for pair in list.chunks(2) {
        let (Some(op), Some(n)) = (pair[0].as_str(), pair[1].as_f64()) else {
            return Err("numeric takes pairs of an operator and a number".into());
        };
        all &= match op {
            "<" => x < n,
            "<=" => x <= n,
            "=" => (x - n).abs() < f64::EPSILON,
            ">" => x > n,
            ">=" => x >= n,
            other => return Err(format!("unrecognized numeric operator {other}")),
        };
    }
    Ok(all)
}

fn ok(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        v.to_string(),
    )
        .into_response()
}

/// A client error as the JSON 1.1 protocol sends it (every error here is the caller's).
fn error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        json!({"__type": code, "message": message}).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(repo: &str) -> Value {
        json!({"id": "1", "account": REGISTRY_ID, "source": "aws.ecr", "time": "2026-12-07T00:00:00Z",
               "region": REGION, "resources": [], "detail-type": "ECR Image Action",
               "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": repo}})
    }

    #[test]
    fn the_stacks_push_rule_matches_a_successful_push_and_not_a_failed_one() {
        let rule: Value = serde_json::from_str(&stack_rules()[0].pattern).unwrap();
        assert_eq!(matches(&rule, &push("user_service")), Ok(true));
        let mut failed = push("user_service");
        failed["detail"]["result"] = json!("FAILURE");
        assert_eq!(matches(&rule, &failed), Ok(false));
    }

    #[test]
    fn an_ecr_event_reaches_the_queue_only_through_an_enabled_rule_that_matches_it() {
        let aws = crate::aws::Aws::default();
        aws.emit_events();
        aws.push_unsigned("user_service", "1.0.0", "COMPLETE", vec![]);
        let kinds = |aws: &crate::aws::Aws| -> Vec<String> {
            aws.sqs
                .sent(EVENTS_QUEUE)
                .iter()
                .map(|b| serde_json::from_str::<Value>(b).unwrap()["detail-type"].to_string())
                .collect()
        };
        assert_eq!(
            kinds(&aws),
            [r#""ECR Image Action""#, r#""ECR Image Scan""#],
            "the push and its finished scan, each through its rule"
        );
        let push: Value = serde_json::from_str(&stack_rules()[0].pattern).unwrap();
        aws.events
            .put_rule("tugboat-ecr-image-action", &push, false);
        aws.events.delete_rule("tugboat-ecr-image-scan");
        aws.push("user_service", "1.0.1", "COMPLETE", vec![]);
        assert_eq!(
            kinds(&aws).len(),
            2,
            "no enabled rule matched: nothing sent"
        );
    }

    #[test]
    fn operators_match_as_the_user_guide_describes() {
        let e = push("salon/user_service");
        let m = |p: Value| matches(&p, &e);
        assert_eq!(
            m(json!({"detail": {"repository-name": [{"prefix": "salon/"}]}})),
            Ok(true)
        );
        assert_eq!(
            m(json!({"detail": {"repository-name": [{"suffix": "_service"}]}})),
            Ok(true)
        );
        assert_eq!(
            m(json!({"detail": {"repository-name": [{"anything-but": {"prefix": "salon/"}}]}})),
            Ok(false)
        );
        assert_eq!(
            m(json!({"detail": {"repository-name": [{"anything-but": ["a", "b"]}]}})),
            Ok(true)
        );
        assert_eq!(
            m(json!({"detail": {"repository-name": [{"wildcard": "salon/*_serv*"}]}})),
            Ok(true)
        );
        assert_eq!(
            m(
                json!({"detail": {"repository-name": [{"equals-ignore-case": "SALON/USER_SERVICE"}]}})
            ),
            Ok(true)
        );
        assert_eq!(
            m(json!({"detail": {"image-tag": [{"exists": false}]}})),
            Ok(true)
        );
        assert_eq!(
            m(json!({"detail": {"image-tag": [{"exists": true}]}})),
            Ok(false)
        );
        assert_eq!(m(json!({"detail": {"image-tag": ["1.0.0"]}})), Ok(false));
        assert_eq!(
            m(
                json!({"$or": [{"source": ["aws.inspector2"]}, {"detail": {"result": ["SUCCESS"]}}]})
            ),
            Ok(true)
        );
        assert!(m(json!({"detail": {"result": [{"cidr": "10.0.0.0/8"}]}})).is_err());
        assert!(
            m(json!({"detail": {"result": "SUCCESS"}})).is_err(),
            "a leaf is a list"
        );
    }
}
