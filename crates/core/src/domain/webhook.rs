//! What a GitHub webhook delivery means for tugboat: only new commands on pull requests and
//! changes to its own promotion PRs call for a cycle. The body is untrusted input, read here
//! after the daemon has checked its signature.

use serde_json::Value;

use super::chatops;

/// What a delivery asks of tugboat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// GitHub's `ping` on hook creation.
    Pong,
    /// A cycle is due (why), for the PR or issue `number` when the delivery names one.
    Wake { why: String, number: Option<u64> },
    /// A person asked to run tugboat's gate check again on these pull requests: a cycle is
    /// due, and it scans their images again, as `/rescan` does.
    Rerun { prs: Vec<u64>, why: String },
    /// Nothing to do (why).
    Ignored(String),
}

/// The meaning of a delivery of `event` (the `X-GitHub-Event` header) with this body; an
/// error says why the body is not a payload tugboat can read.
pub fn classify(event: &str, body: &[u8]) -> Result<Meaning, String> {
    let p: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let action = p.get("action").and_then(Value::as_str).unwrap_or("");
    Ok(match event {
        "ping" => Meaning::Pong,
        "issue_comment" => comment(action, &p),
        "pull_request" | "pull_request_review" => {
            let branch = p
                .pointer("/pull_request/head/ref")
                .and_then(Value::as_str)
                .unwrap_or("");
            if branch.starts_with("tugboat/") {
                let n = p.pointer("/pull_request/number").and_then(Value::as_u64);
                Meaning::Wake {
                    why: format!("{event} {action} on #{}", n.unwrap_or(0)),
                    number: n,
                }
            } else {
                Meaning::Ignored("not a tugboat promotion PR".into())
            }
        }
        "check_run" | "check_suite" => rerun(event, action, &p),
        other => Meaning::Ignored(format!("event {other} is not used")),
    })
}

/// "Re-run" on tugboat's gate check (`check_run`), or "Re-run all checks" on a suite that
/// holds it (`check_suite`): GitHub sends these to the App that made the checks.
fn rerun(event: &str, action: &str, p: &Value) -> Meaning {
    if action != "rerequested" {
        return Meaning::Ignored(format!("{event} {action}: only a re-run asks for anything"));
    }
    if event == "check_run" {
        let name = p
            .pointer("/check_run/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name != GATE_CHECK {
            return Meaning::Ignored(format!("a re-run of {name:?}, not of {GATE_CHECK}"));
        }
    }
    let prs: Vec<u64> = p
        .pointer(&format!("/{event}/pull_requests"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|pr| pr.get("number").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    if prs.is_empty() {
        return Meaning::Ignored(format!("a re-run of {event} on no pull request"));
    }
    let list: Vec<String> = prs.iter().map(|n| format!("#{n}")).collect();
    Meaning::Rerun {
        why: format!("{event} re-run on {}", list.join(", ")),
        prs,
    }
}

/// The name of tugboat's gate check run (and commit status context).
pub const GATE_CHECK: &str = "tugboat/scan-gate";

fn comment(action: &str, p: &Value) -> Meaning {
    let on_pr = p.pointer("/issue/pull_request").is_some();
    let body = p
        .pointer("/comment/body")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bot = p
        .pointer("/comment/user/type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "Bot");
    if action != "created" {
        Meaning::Ignored(format!("comment {action}: only new comments are commands"))
    } else if !on_pr {
        Meaning::Ignored("a comment on an issue, not a pull request".into())
    } else if bot {
        Meaning::Ignored("a comment by a bot".into())
    } else if chatops::parse(body).is_none() {
        Meaning::Ignored("not a command".into())
    } else {
        let n = p.pointer("/issue/number").and_then(Value::as_u64);
        Meaning::Wake {
            why: format!("a command on #{}", n.unwrap_or(0)),
            number: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_on_a_pull_request_wakes_and_chat_or_other_events_do_not() {
        let cmd = br#"{"action":"created","issue":{"number":7,"pull_request":{}},"comment":{"body":"/approve","user":{"type":"User"}}}"#;
        assert_eq!(
            classify("issue_comment", cmd),
            Ok(Meaning::Wake {
                why: "a command on #7".into(),
                number: Some(7)
            })
        );
        let by_bot = br#"{"action":"created","issue":{"number":7,"pull_request":{}},"comment":{"body":"/approve","user":{"type":"Bot"}}}"#;
        assert_eq!(
            classify("issue_comment", by_bot),
            Ok(Meaning::Ignored("a comment by a bot".into()))
        );
        let pr = br#"{"action":"synchronize","pull_request":{"number":3,"head":{"ref":"tugboat/dev/api"}}}"#;
        assert_eq!(
            classify("pull_request", pr),
            Ok(Meaning::Wake {
                why: "pull_request synchronize on #3".into(),
                number: Some(3)
            })
        );
        assert_eq!(classify("ping", b"{}"), Ok(Meaning::Pong));
        assert_eq!(
            classify("push", b"{}"),
            Ok(Meaning::Ignored("event push is not used".into()))
        );
        assert!(classify("push", b"\xff").is_err_and(|e| e.starts_with("the body is not JSON")));
    }

    #[test]
    fn a_rerun_of_the_gate_check_asks_for_a_rescan_of_its_pull_requests_and_others_do_not() {
        let gate = br#"{"action":"rerequested","check_run":{"name":"tugboat/scan-gate","pull_requests":[{"number":4},{"number":9}]}}"#;
        assert_eq!(
            classify("check_run", gate),
            Ok(Meaning::Rerun {
                prs: vec![4, 9],
                why: "check_run re-run on #4, #9".into()
            })
        );
        let deploy = br#"{"action":"rerequested","check_run":{"name":"tugboat/deploy","pull_requests":[{"number":4}]}}"#;
        assert!(matches!(
            classify("check_run", deploy),
            Ok(Meaning::Ignored(_))
        ));
        let done = br#"{"action":"completed","check_run":{"name":"tugboat/scan-gate","pull_requests":[{"number":4}]}}"#;
        assert!(matches!(
            classify("check_run", done),
            Ok(Meaning::Ignored(_))
        ));
        let suite = br#"{"action":"rerequested","check_suite":{"pull_requests":[{"number":2}]}}"#;
        assert!(matches!(
            classify("check_suite", suite),
            Ok(Meaning::Rerun { prs, .. }) if prs == vec![2]
        ));
        let nowhere = br#"{"action":"rerequested","check_suite":{"pull_requests":[]}}"#;
        assert!(matches!(
            classify("check_suite", nowhere),
            Ok(Meaning::Ignored(_))
        ));
    }
}
