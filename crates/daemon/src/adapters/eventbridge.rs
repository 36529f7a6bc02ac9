//! The EventBridge adapter (aws-sdk-eventbridge), for `tugboat doctor` only: which rules of
//! the default event bus send to the event queue, their patterns, and whether a pattern matches
//! an event (`TestEventPattern`: EventBridge's own matcher, so the doctor does not guess at the
//! pattern language). All three calls read; none changes a rule.

use aws_sdk_eventbridge::Client;
use tugboat_core::domain::doctor::rules::EventRule;

use super::aws::{CountCalls, map_err};
use crate::ports::PortResult;
use crate::telemetry::ApiMetrics;

/// What EventBridge calls a rule that is not there (deleted between the listing and the read).
const NO_RULE: &[&str] = &["ResourceNotFoundException"];

/// The rules most a queue is the target of; more is a misconfiguration to report, not to read.
const MAX_RULES: usize = 100;

/// EventBridge's default bus through the AWS SDK.
#[derive(Clone)]
pub struct EventBridge {
    client: Client,
}

impl EventBridge {
    /// A client whose every request is counted into `api`.
    pub fn new(sdk: &aws_config::SdkConfig, api: &ApiMetrics) -> Self {
        let conf = aws_sdk_eventbridge::config::Builder::from(sdk)
            .interceptor(CountCalls {
                system: "eventbridge",
                api: api.clone(),
            })
            .build();
        Self {
            client: Client::from_conf(conf),
        }
    }

    /// The rules of the default bus that send to `target` (an ARN), each with its state and
    /// pattern (`ListRuleNamesByTarget`, then `DescribeRule` for each); at most
    /// [`MAX_RULES`].
    pub async fn rules_targeting(&self, target: &str) -> PortResult<Vec<EventRule>> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_rule_names_by_target()
                .target_arn(target)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_err("eventbridge", "ListRuleNamesByTarget", &e, &[]))?;
            names.extend(out.rule_names().iter().cloned());
            token = out.next_token().map(str::to_owned);
            if token.is_none() || names.len() >= MAX_RULES {
                break;
            }
        }
        names.truncate(MAX_RULES);
        let mut rules = Vec::with_capacity(names.len());
        for name in names {
            let out = match self.client.describe_rule().name(&name).send().await {
                Ok(out) => out,
                Err(e) => {
                    let e = map_err("eventbridge", "DescribeRule", &e, NO_RULE);
                    if e.kind == crate::ports::ErrorKind::NotFound {
                        continue;
                    }
                    return Err(e);
                }
            };
            rules.push(EventRule {
                name,
                enabled: out
                    .state()
                    .is_some_and(|s| s.as_str().eq_ignore_ascii_case("ENABLED")),
                pattern: out.event_pattern().map(str::to_owned),
            });
        }
        Ok(rules)
    }

    /// Whether `event` (JSON, with the fields TestEventPattern requires) matches `pattern`.
    pub async fn matches(&self, pattern: &str, event: &str) -> PortResult<bool> {
        let out = self
            .client
            .test_event_pattern()
            .event_pattern(pattern)
            .event(event)
            .send()
            .await
            .map_err(|e| map_err("eventbridge", "TestEventPattern", &e, &[]))?;
        Ok(out.result())
    }
}
