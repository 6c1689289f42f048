//! Test harness for integration tests of every crate (feature `test-support`).
//!
//! Each test gets its own database, cloned from a template that is migrated once per
//! migration set, and its own Kafka topic prefix and consumer groups, so tests run in
//! parallel and repeatedly against the real PostgreSQL and Kafka that `cargo xtask test`
//! provides (through `DATABASE_URL` and `KAFKA_BROKERS`). A test that stops and starts
//! Kafka runs a [`PrivateKafka`] of its own (jars through `SEQ_TEST_KAFKA_LIBS`). Mail servers:
//! [`greenmail`] (no authentication) and, for mailboxes connected with OAuth, [`oauth`]'s
//! authorization server and Dovecot (XOAUTH2 only).

mod database;
mod filter;
pub mod greenmail;
mod http;
mod mailbox_events;
pub mod oauth;
mod private_kafka;
pub mod process_stats;
mod smtp_sink;
mod topic_reader;
pub mod webhook_receiver;

use std::future::Future;
use std::time::{Duration, Instant};

use figment::providers::Serialized;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::config::Config;

pub use database::{TestDatabase, admin_database_url};
pub use filter::pipe_through;
pub use http::{assert_healthy_and_ready, assert_unready_without_database, get_json, get_text};
pub use mailbox_events::the_only_failing_event;
pub use private_kafka::PrivateKafka;
pub use smtp_sink::{DiscardingSink, SmtpSink};
pub use topic_reader::{ConsumedRecord, count_records, read_topic};

/// `security.encryption_keys` of test configurations (a published, test-only key).
pub const TEST_ENCRYPTION_KEYS: &str = "1:dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGU=";
/// `security.tracking_keys` of test configurations (a published, test-only key).
pub const TEST_TRACKING_KEYS: &str = "dGVzdC1vbmx5LXRyYWNraW5nLXNpZ25pbmcta2V5LTAx";
/// `security.allowed_private_networks` of test configurations: loopback, where the test mail
/// servers (GreenMail, smtp-sink, the tests' scripted servers) listen. Tests of the refusal
/// itself empty the list.
pub const TEST_ALLOWED_PRIVATE_NETWORKS: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// The outbound guard of test configurations: loopback allowed
/// ([`TEST_ALLOWED_PRIVATE_NETWORKS`]), everything else that is not public refused.
pub fn test_outbound_guard() -> crate::outbound::OutboundGuard {
    crate::outbound::OutboundGuard::new(
        TEST_ALLOWED_PRIVATE_NETWORKS
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect(),
    )
}

/// Configuration pointing at this test's database, with a topic prefix of its own and
/// every listener on an ephemeral port.
pub fn test_config_for(db: &TestDatabase) -> anyhow::Result<Config> {
    test_config_with_url(db.url.expose_secret())
}

/// Like [`test_config_for`] with any database URL (e.g. one nothing listens on).
pub fn test_config_with_url(database_url: &str) -> anyhow::Result<Config> {
    let prefix = format!("t{}.", Uuid::new_v4().simple());
    let figment = crate::config::figment(None)?
        .merge(Serialized::default("database.url", database_url))
        .merge(Serialized::default("database.connect_timeout_ms", 2000))
        .merge(Serialized::default("database.acquire_timeout_ms", 2000))
        .merge(Serialized::default("kafka.topic_prefix", prefix))
        .merge(Serialized::default("kafka.partitions", 2))
        .merge(Serialized::default("kafka.request_timeout_ms", 5000))
        .merge(Serialized::default("telemetry.otlp_endpoint", ""))
        .merge(Serialized::default("api.bind", "127.0.0.1:0"))
        .merge(Serialized::default("tracker.bind", "127.0.0.1:0"))
        .merge(Serialized::default("scheduler.admin_bind", "127.0.0.1:0"))
        .merge(Serialized::default(
            "sender_worker.admin_bind",
            "127.0.0.1:0",
        ))
        .merge(Serialized::default(
            "inbox_watcher.admin_bind",
            "127.0.0.1:0",
        ))
        .merge(Serialized::default("webhooks.admin_bind", "127.0.0.1:0"))
        .merge(Serialized::default("shutdown.grace_period_seconds", 5))
        .merge(Serialized::default(
            "security.encryption_keys",
            TEST_ENCRYPTION_KEYS,
        ))
        .merge(Serialized::default(
            "security.tracking_keys",
            TEST_TRACKING_KEYS,
        ))
        .merge(Serialized::default(
            "security.allowed_private_networks",
            TEST_ALLOWED_PRIVATE_NETWORKS,
        ));
    Ok(Config::from_figment(&figment)?)
}

/// Inbox watcher settings for tests: leases of 3 s renewed every second, polls every 200 ms,
/// short timeouts and backoff, so takeovers and retries happen within a test's patience.
pub fn quick_inbox_watcher(config: &mut Config) {
    let watcher = &mut config.inbox_watcher;
    watcher.lease_seconds = 3;
    watcher.claim_interval_ms = 1000;
    watcher.poll_interval_ms = 200;
    watcher.backoff_initial_ms = 100;
    watcher.backoff_max_ms = 1000;
    watcher.connect_timeout_ms = 5000;
    watcher.command_timeout_ms = 10_000;
    config.outbox.poll_interval_ms = 50;
}

/// Webhooks settings for tests: retries after 1 s each (five of them), polls every 100 ms,
/// attempts time out after 3 s and leases last 8 s, so retries, takeovers and failures
/// happen within a test's patience.
pub fn quick_webhooks(config: &mut Config) {
    let webhooks = &mut config.webhooks;
    webhooks.retry_schedule_seconds = vec![1; 5];
    webhooks.poll_interval_ms = 100;
    webhooks.request_timeout_ms = 3000;
    webhooks.lease_seconds = 8;
    webhooks.fanout_wait_ms = 5;
    webhooks.record_wait_ms = 10;
}

/// A PostgreSQL URL on a local port where nothing listens.
pub fn unreachable_database_url() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("postgres://postgres@127.0.0.1:{port}/nothing"))
}

/// Polls `check` until it yields a value or `timeout` passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
