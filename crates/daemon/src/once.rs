//! What `tugboat once` does after its cycle, as the daemon does after each of its own: the
//! dashboard published and the cycle's notifications sent, each change at most once (the
//! ledger records it first, as the daemon's do), waited for up to a bound and reported.
//!
//! A team that runs tugboat as a CronJob or a CI step hears of a promotion, a block, a
//! rollback and a hold exactly as a team running the daemon does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::dashboard::{Published, row_of};
use crate::engine::{Engine, EnvReport};
use crate::metrics::NotifyMetrics;
use crate::notify::{Delivery, Notifier, Outcome};

/// How long `once` waits for its notifications by default: a sink that answers promptly
/// gets its retries after 1 s, 2 s, 4 s and 8 s (15 s of backoff) inside it, and a sink that
/// hangs costs at most three of its 10 s requests. A scheduled job that could hang on a dead
/// sink for minutes would be worse than one that says, in its exit status, what it could not
/// deliver.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a `once` run told people.
#[derive(Debug, Default)]
pub struct Told {
    /// Each notification's delivery to each sink.
    pub deliveries: Vec<Delivery>,
    /// The dashboard's publication, when `github.dashboard` is on.
    pub dashboard: Option<Result<Published, String>>,
}

/// Publish the dashboard for a cycle's `reports` and send their notifications to the
/// configured sinks, waiting for the deliveries up to `within`.
pub async fn tell(
    cfg: &Config,
    engine: &Engine,
    reports: &[EnvReport],
    clock: Arc<dyn Clock>,
    within: Duration,
) -> anyhow::Result<Told> {
    let dashboard = if cfg.github.dashboard {
        // One row per service and environment, in the daemon's order.
        let rows: BTreeMap<_, _> = reports
            .iter()
            .map(|r| ((r.service.clone(), r.environment.clone()), row_of(r)))
            .collect();
        let rows: Vec<_> = rows.into_values().collect();
        let published = engine.publish_dashboard(&rows).await;
        if let Err(e) = &published {
            tracing::warn!(error = %e, "cannot publish the dashboard issue");
        }
        Some(published.map_err(|e| e.to_string()))
    } else {
        None
    };
    let routes = crate::app::notification_routes(cfg).await?;
    let mut deliveries = Vec::new();
    if !routes.is_empty() {
        let attempts = cfg.notify.as_ref().map_or(5, |n| n.attempts);
        let notifier = Notifier::tallied(
            routes,
            engine.ports().ledger.clone(),
            clock,
            NotifyMetrics::default(),
            attempts,
        );
        notifier.submit(crate::notify::of_cycle(reports, &cfg.argocd.url));
        deliveries = notifier.finish(within).await;
    }
    Ok(Told {
        deliveries,
        dashboard,
    })
}

impl Told {
    /// Deliveries that did not reach their sink, and a dashboard that could not be published.
    pub fn undelivered(&self) -> usize {
        let notes = self
            .deliveries
            .iter()
            .filter(|d| d.outcome != Outcome::Sent)
            .count();
        notes + usize::from(matches!(self.dashboard, Some(Err(_))))
    }

    /// For people: one line of totals, then a line per delivery that did not arrive.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(dashboard) = &self.dashboard {
            out.push_str(&match dashboard {
                Ok(Published::Created(n)) => format!("dashboard: created #{n}\n"),
                Ok(Published::Updated(n)) => format!("dashboard: updated #{n}\n"),
                Ok(Published::Unchanged(n)) => format!("dashboard: #{n} unchanged\n"),
                Ok(Published::LeftToOther) => {
                    "dashboard: left to the tugboat that is creating it\n".to_owned()
                }
                Err(e) => format!("dashboard: NOT PUBLISHED: {e}\n"),
            });
        }
        if self.deliveries.is_empty() {
            return out;
        }
        let sent = self.deliveries.len() - self.undelivered_notes().count();
        let mut per_sink: BTreeMap<&str, usize> = BTreeMap::new();
        for d in self
            .deliveries
            .iter()
            .filter(|d| d.outcome == Outcome::Sent)
        {
            *per_sink.entry(&d.sink).or_default() += 1;
        }
        let sinks: Vec<String> = per_sink.iter().map(|(s, n)| format!("{s} {n}")).collect();
        out.push_str(&format!(
            "notifications: {sent} sent{}, {} not delivered\n",
            if sinks.is_empty() {
                String::new()
            } else {
                format!(" ({})", sinks.join(", "))
            },
            self.undelivered_notes().count()
        ));
        for d in self.undelivered_notes() {
            let why = match &d.outcome {
                Outcome::Failed(e) => format!("failed: {e}"),
                Outcome::Dropped(e) => format!("not sent: {e}"),
                Outcome::Pending => "still being retried when the wait ended".to_owned(),
                Outcome::Sent => continue,
            };
            out.push_str(&format!("  {} {}: {why}\n", d.sink, d.key));
        }
        out
    }

    /// For machines: `{"dashboard": …, "notifications": [{sink, event, key, outcome, error}]}`.
    pub fn json(&self) -> serde_json::Value {
        let notes: Vec<serde_json::Value> = self
            .deliveries
            .iter()
            .map(|d| {
                let (outcome, error) = match &d.outcome {
                    Outcome::Sent => ("sent", None),
                    Outcome::Failed(e) => ("failed", Some(e.clone())),
                    Outcome::Dropped(e) => ("dropped", Some(e.clone())),
                    Outcome::Pending => ("pending", None),
                };
                serde_json::json!({
                    "sink": d.sink, "event": d.event, "key": d.key,
                    "outcome": outcome, "error": error,
                })
            })
            .collect();
        let dashboard = self.dashboard.as_ref().map(|d| match d {
            Ok(p) => serde_json::json!({"result": p.as_str()}),
            Err(e) => serde_json::json!({"result": "error", "error": e}),
        });
        serde_json::json!({"dashboard": dashboard, "notifications": notes})
    }

    fn undelivered_notes(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries
            .iter()
            .filter(|d| d.outcome != Outcome::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sink: &str, outcome: Outcome) -> Delivery {
        Delivery {
            sink: sink.into(),
            event: "promoted",
            key: "promoted/user_service/dev".into(),
            outcome,
        }
    }

    #[test]
    fn a_run_that_delivered_everything_says_so_in_one_line() {
        let told = Told {
            deliveries: vec![delivery("slack", Outcome::Sent)],
            dashboard: Some(Ok(Published::Updated(7))),
        };
        assert_eq!(told.undelivered(), 0);
        assert_eq!(
            told.text(),
            "dashboard: updated #7\nnotifications: 1 sent (slack 1), 0 not delivered\n"
        );
    }

    #[test]
    fn each_delivery_that_did_not_arrive_is_named_with_why() {
        let told = Told {
            deliveries: vec![
                delivery("slack", Outcome::Sent),
                delivery("audit", Outcome::Failed("HTTP 500".into())),
                delivery("pager", Outcome::Pending),
            ],
            dashboard: Some(Err("GitHub answered 403".into())),
        };
        assert_eq!(told.undelivered(), 3);
        let text = told.text();
        assert!(
            text.contains("dashboard: NOT PUBLISHED: GitHub answered 403"),
            "{text}"
        );
        assert!(text.contains("1 sent (slack 1), 2 not delivered"), "{text}");
        assert!(
            text.contains("  audit promoted/user_service/dev: failed: HTTP 500"),
            "{text}"
        );
        assert!(
            text.contains("  pager promoted/user_service/dev: still being retried"),
            "{text}"
        );
        assert_eq!(told.json()["notifications"][1]["outcome"], "failed");
    }
}
