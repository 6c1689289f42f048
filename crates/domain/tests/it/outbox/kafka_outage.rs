//! Done-when of the outbox relay: no job is lost when Kafka is stopped and started mid-run.
//! A private broker, because the shared one serves every other test.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::db::outbox as queries;
use domain::db::outbox::NewOutboxRecord;
use domain::db::schema::outbox;
use domain::kafka::{Producer, ensure_topics};
use domain::outbox::OutboxRelay;
use domain::testing::{PrivateKafka, poll_until};
use tokio_util::sync::CancellationToken;

use super::{DEADLINE, count_rows, envelope_id, jobs, published_by_id, setup};

const ROWS: usize = 1000;
/// Rows per insert transaction, like the scheduler's dispatch rounds (smaller, so there are
/// many of them around the outage).
const INSERT_BATCH: usize = 50;

#[tokio::test]
async fn relay_loses_no_row_when_kafka_stops_and_starts_mid_run() -> anyhow::Result<()> {
    let mut kafka = PrivateKafka::launch().await?;
    let mut setup = setup().await?;
    setup.config.kafka.brokers = kafka.brokers();
    // Short timeouts, so sends fail (and are recorded as failures) while the broker is down.
    setup.config.kafka.request_timeout_ms = 2000;
    poll_until(DEADLINE, "the topic to be created", || async {
        ensure_topics(&setup.config.kafka, &[&setup.topic])
            .await
            .ok()
    })
    .await?;

    let relay = OutboxRelay::new(
        setup.pool.clone(),
        Producer::new(&setup.config.kafka)?,
        100,
        Duration::from_millis(50),
    )
    .with_backoff(Duration::from_millis(100), Duration::from_secs(1));
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    let records = jobs(&setup.topic, ROWS)?;
    let mut conn = setup.db.connect().await?;
    let (before, rest) = records.split_at(400);
    let (during, after) = rest.split_at(300);

    insert(&mut conn, before).await?;
    poll_until(
        DEADLINE,
        "the relay to publish before the outage",
        || async {
            let mut conn = setup.db.connect().await.ok()?;
            // Acknowledged rows are deleted.
            let left = count_rows(&mut conn).await.ok()?;
            (left < before.len() as i64).then_some(())
        },
    )
    .await?;

    kafka.stop().await?;
    insert(&mut conn, during).await?;
    // The outage is seen: a round's sends timed out and were counted, the rows kept.
    poll_until(DEADLINE, "a failed publish to be recorded", || async {
        let mut conn = setup.db.connect().await.ok()?;
        let failed: i64 = outbox::table
            .filter(outbox::attempts.gt(0))
            .count()
            .get_result(&mut conn)
            .await
            .ok()?;
        (failed > 0).then_some(())
    })
    .await?;
    assert!(queries::count_pending(&mut conn).await? > 0);

    kafka.start().await?;
    insert(&mut conn, after).await?;
    poll_until(DEADLINE, "every row to be published", || async {
        let mut conn = setup.db.connect().await.ok()?;
        (queries::count_pending(&mut conn).await.ok()? == 0).then_some(())
    })
    .await
    .map_err(|e| e.context(kafka.log_tail()))?;
    shutdown.cancel();
    relay.await?;

    // At least once: a send whose acknowledgement the outage swallowed may have gone twice,
    // but every row's payload is in the topic.
    let (published, _) = published_by_id(&setup.config, &setup.topic).await?;
    let expected: HashSet<_> = records
        .iter()
        .map(|r| envelope_id(&r.payload))
        .collect::<anyhow::Result<_>>()?;
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !published.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} rows lost: {missing:?}",
        missing.len()
    );
    for record in &records {
        let consumed = &published[&envelope_id(&record.payload)?];
        assert_eq!(consumed.payload_json()?, record.payload);
        assert_eq!(consumed.key.as_deref(), Some(record.key.as_str()));
    }
    assert_eq!(count_rows(&mut conn).await?, 0);
    Ok(())
}

async fn insert(
    conn: &mut diesel_async::AsyncPgConnection,
    records: &[NewOutboxRecord],
) -> anyhow::Result<()> {
    for chunk in records.chunks(INSERT_BATCH) {
        queries::insert_many(conn, chunk).await?;
    }
    Ok(())
}
