//! The records on each topic, as typed payloads of [`crate::kafka::Envelope`]. These are wire
//! types of their own, never database rows: a row can change shape without breaking
//! consumers still running the previous release.

mod email_events;
mod email_jobs;
mod email_retries;
mod mailbox_events;
mod webhook_events;

pub use email_events::{Client, EmailEvent, Inbound, MessageRef};
pub use email_jobs::{EmailJob, SendJob};
pub use email_retries::{EmailRetry, RetryRequest};
pub use mailbox_events::{FoundBy, MailboxEvent, PauseCause};
pub use webhook_events::WebhookEvent;
