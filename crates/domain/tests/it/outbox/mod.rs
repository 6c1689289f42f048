//! The transactional outbox against real PostgreSQL and Kafka: the queries, the relay, and
//! the relay across a Kafka outage (on a private broker, since the shared one must stay up).

mod kafka_outage;
mod queries;
mod relay;
mod send_jobs;

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::config::Config;
use domain::db::PgPool;
use domain::db::outbox::NewOutboxRecord;
use domain::db::schema::outbox;
use domain::events::{EmailJob, SendJob};
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::outbox::OutboxRelay;
use domain::testing::{ConsumedRecord, TestDatabase, count_records, read_topic, test_config_for};
use uuid::Uuid;

/// Bound on waits for Kafka and the relay: generous for a loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A test's database, configuration and `email-jobs` topic (created, 2 partitions).
pub struct Setup {
    pub db: TestDatabase,
    pub config: Config,
    pub pool: PgPool,
    pub topic: String,
}

pub async fn setup() -> anyhow::Result<Setup> {
    let db = TestDatabase::create().await?;
    let config = test_config_for(&db)?;
    let topic = TopicNames::from_config(&config.kafka).email_jobs;
    ensure_topics(&config.kafka, &[&topic]).await?;
    Ok(Setup {
        pool: db.pool()?,
        db,
        config,
        topic,
    })
}

impl Setup {
    pub fn relay(&self, batch_size: u32) -> anyhow::Result<OutboxRelay> {
        let producer = Producer::new(&self.config.kafka)?;
        Ok(OutboxRelay::new(
            self.pool.clone(),
            producer,
            batch_size,
            Duration::from_millis(50),
        ))
    }
}

/// `n` send jobs for `topic`, keyed by one of four mailboxes as the scheduler keys them.
pub fn jobs(topic: &str, n: usize) -> anyhow::Result<Vec<NewOutboxRecord>> {
    let mailboxes: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    (0..n)
        .map(|i| {
            let mailbox_id = mailboxes[i % mailboxes.len()];
            let envelope = Envelope::new(
                Uuid::nil(),
                EmailJob::Send(SendJob {
                    message_id: Uuid::now_v7(),
                    enrollment_id: Uuid::now_v7(),
                    mailbox_id,
                    attempt: 1,
                }),
            );
            Ok(NewOutboxRecord::from_envelope(
                topic,
                mailbox_id.to_string(),
                &envelope,
            )?)
        })
        .collect()
}

/// The envelope id of a record as written (the key every check matches records by).
pub fn envelope_id(payload: &serde_json::Value) -> anyhow::Result<Uuid> {
    let id = payload["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("payload without an id: {payload}"))?;
    Ok(id.parse()?)
}

/// Every record of `topic` (all of them: the count comes from the watermarks first), by
/// envelope id; ids seen more than once are listed too.
pub async fn published_by_id(
    config: &Config,
    topic: &str,
) -> anyhow::Result<(HashMap<Uuid, ConsumedRecord>, Vec<Uuid>)> {
    let total = count_records(&config.kafka, topic).await?;
    let records = read_topic(&config.kafka, topic, usize::try_from(total)?, DEADLINE).await?;
    let mut by_id = HashMap::new();
    let mut repeated = Vec::new();
    for record in records {
        let id = envelope_id(&record.payload_json()?)?;
        if by_id.insert(id, record).is_some() {
            repeated.push(id);
        }
    }
    Ok((by_id, repeated))
}

pub async fn count_with_status(conn: &mut AsyncPgConnection, status: &str) -> anyhow::Result<i64> {
    Ok(outbox::table
        .filter(outbox::status.eq(status))
        .count()
        .get_result(conn)
        .await?)
}

/// Rows left in the outbox: published rows are deleted unless a retention keeps them.
pub async fn count_rows(conn: &mut AsyncPgConnection) -> anyhow::Result<i64> {
    Ok(outbox::table.count().get_result(conn).await?)
}
