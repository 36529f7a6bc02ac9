//! The SQS adapter (aws-sdk-sqs): the queue EventBridge fills with ECR and Inspector events,
//! read with long polling; handled messages are deleted.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

use super::aws::{CountCalls, map_err};
use crate::ports::{ErrorKind, EventQueue, LONG_POLL, PortError, PortResult, QueuedMessage};
use crate::telemetry::ApiMetrics;

/// What SQS calls a queue that is not there.
const NO_QUEUE: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// One SQS queue through the AWS SDK.
#[derive(Clone)]
pub struct Sqs {
    client: Client,
    queue_url: String,
}

impl Sqs {
    /// A client of `queue_url` whose every request is counted into `api`.
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: &str, api: &ApiMetrics) -> Self {
        let conf = aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(CountCalls {
                system: "sqs",
                api: api.clone(),
            })
            .build();
        Self {
            client: Client::from_conf(conf),
            queue_url: queue_url.to_owned(),
        }
    }

    /// The queue's access policy (its `Policy` attribute; `None` when it has none) and its
    /// ARN, for `tugboat doctor`, in one `GetQueueAttributes`.
    pub async fn policy_and_arn(&self) -> PortResult<(Option<String>, Option<String>)> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::Policy)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| map_err("sqs", "GetQueueAttributes", &e, NO_QUEUE))?;
        let get = |name: &QueueAttributeName| out.attributes().and_then(|a| a.get(name)).cloned();
        Ok((
            get(&QueueAttributeName::Policy),
            get(&QueueAttributeName::QueueArn),
        ))
    }
}

#[async_trait]
impl EventQueue for Sqs {
    async fn receive(&self) -> PortResult<Vec<QueuedMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(i32::try_from(LONG_POLL.as_secs()).unwrap_or(20))
            .send()
            .await
            .map_err(|e| map_err("sqs", "ReceiveMessage", &e, NO_QUEUE))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(QueuedMessage {
                    id: m.message_id()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> PortResult<()> {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| {
                            PortError::new(
                                "sqs",
                                "DeleteMessageBatch",
                                ErrorKind::Rejected,
                                e.to_string(),
                            )
                        })
                })
                .collect::<PortResult<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| map_err("sqs", "DeleteMessageBatch", &e, NO_QUEUE))?;
            if let Some(failed) = out.failed().first() {
                return Err(PortError::new(
                    "sqs",
                    "DeleteMessageBatch",
                    ErrorKind::Transient,
                    format!(
                        "{} of {} messages not deleted: {} {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn depth(&self) -> PortResult<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| map_err("sqs", "GetQueueAttributes", &e, NO_QUEUE))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}
