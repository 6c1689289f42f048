//! The relay against the shared broker: what it publishes, several relays at once, rows
//! committed out of id order, and an unreachable broker.

use std::collections::HashSet;
use std::time::Duration;

use diesel_async::AsyncConnection as _;
use domain::db::outbox as queries;
use domain::kafka::Producer;
use domain::outbox::{OutboxRelay, RelayError};
use domain::testing::{count_records, poll_until};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{DEADLINE, count_rows, count_with_status, envelope_id, jobs, published_by_id, setup};

#[tokio::test]
async fn relay_publishes_each_row_with_its_key_and_stored_headers() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    let mut records = jobs(&setup.topic, 5)?;
    for (i, record) in records.iter_mut().enumerate() {
        // As a traced scheduler transaction would have captured it.
        record.headers = json!({"traceparent": format!("00-{:032x}-{:016x}-01", i + 1, i + 1)});
    }
    queries::insert_many(&mut conn, &records).await?;

    let relay = setup.relay(100)?;
    assert_eq!(relay.run_once().await?, 5);
    assert_eq!(
        relay.run_once().await?,
        0,
        "a published row was claimed again"
    );
    assert_eq!(
        count_rows(&mut conn).await?,
        0,
        "acknowledged rows are deleted"
    );

    assert_eq!(count_records(&setup.config.kafka, &setup.topic).await?, 5);
    let (published, repeated) = published_by_id(&setup.config, &setup.topic).await?;
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
    for record in &records {
        let consumed = published
            .get(&envelope_id(&record.payload)?)
            .ok_or_else(|| anyhow::anyhow!("record {} not published", record.payload))?;
        assert_eq!(consumed.key.as_deref(), Some(record.key.as_str()));
        assert_eq!(consumed.payload_json()?, record.payload);
        assert_eq!(
            consumed.header("traceparent"),
            record.headers["traceparent"].as_str()
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_relays_publish_each_of_2000_rows_exactly_once() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    let records = jobs(&setup.topic, 2000)?;
    for chunk in records.chunks(500) {
        queries::insert_many(&mut conn, chunk).await?;
    }

    let shutdown = CancellationToken::new();
    // Small batches, so the replicas take turns many times.
    let replicas: Vec<_> = (0..2)
        .map(|_| Ok(tokio::spawn(setup.relay(50)?.run(shutdown.clone()))))
        .collect::<anyhow::Result<_>>()?;
    poll_until(DEADLINE, "every row to be published", || async {
        let mut conn = setup.db.connect().await.ok()?;
        (queries::count_pending(&mut conn).await.ok()? == 0).then_some(())
    })
    .await?;
    shutdown.cancel();
    for replica in replicas {
        replica.await?;
    }

    // Every delivery was acknowledged, so each row went exactly once: the topic holds 2,000
    // records, and they are the 2,000 rows.
    assert_eq!(
        count_records(&setup.config.kafka, &setup.topic).await?,
        2000
    );
    let (published, repeated) = published_by_id(&setup.config, &setup.topic).await?;
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
    let expected: HashSet<_> = records
        .iter()
        .map(|r| envelope_id(&r.payload))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(published.keys().copied().collect::<HashSet<_>>(), expected);
    assert_eq!(count_rows(&mut conn).await?, 0);
    Ok(())
}

#[tokio::test]
async fn row_committed_after_a_larger_id_was_published_is_still_published() -> anyhow::Result<()> {
    let setup = setup().await?;
    let records = jobs(&setup.topic, 2)?;
    let (early, late) = (records[0].clone(), records[1].clone());

    // A transaction takes id N and stays open...
    let (inserted_tx, inserted_rx) = oneshot::channel();
    let (commit_tx, commit_rx) = oneshot::channel::<()>();
    let mut slow_conn = setup.db.connect().await?;
    let slow = tokio::spawn(async move {
        slow_conn
            .transaction(async |tx| -> anyhow::Result<()> {
                let ids = queries::insert_many(tx, &[early]).await?;
                let _ = inserted_tx.send(ids);
                let _ = commit_rx.await;
                Ok(())
            })
            .await
    });
    let slow_id = inserted_rx.await?[0];

    // ...while N+1 commits and is published.
    let mut conn = setup.db.connect().await?;
    let fast_id = queries::insert_many(&mut conn, &[late]).await?[0];
    assert!(fast_id > slow_id, "{fast_id} should follow {slow_id}");
    let relay = setup.relay(100)?;
    assert_eq!(relay.run_once().await?, 1);

    // N commits after a larger id went out: a relay remembering "published up to N+1"
    // would never look at it again; selecting by status finds it.
    let _ = commit_tx.send(());
    slow.await??;
    assert_eq!(relay.run_once().await?, 1);
    assert_eq!(count_rows(&mut conn).await?, 0);
    let (published, _) = published_by_id(&setup.config, &setup.topic).await?;
    for record in &records {
        assert!(published.contains_key(&envelope_id(&record.payload)?));
    }
    Ok(())
}

#[tokio::test]
async fn unacknowledged_rows_stay_pending_with_the_attempt_counted() -> anyhow::Result<()> {
    let mut setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    queries::insert_many(&mut conn, &jobs(&setup.topic, 3)?).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    setup.config.kafka.brokers = closed.to_string();
    // Deliveries give up after three request timeouts.
    setup.config.kafka.request_timeout_ms = 500;
    let relay = OutboxRelay::new(
        setup.pool.clone(),
        Producer::new(&setup.config.kafka)?,
        100,
        Duration::from_millis(50),
    );

    match relay.run_once().await {
        Err(RelayError::Publish {
            claimed: 3,
            published: 0,
            failed: 3,
            ..
        }) => {}
        other => anyhow::bail!("expected 3 failed records, got {other:?}"),
    }
    assert_eq!(queries::count_pending(&mut conn).await?, 3);
    let claimed = conn
        .transaction(async |tx| queries::claim_pending(tx, 10).await)
        .await?;
    assert!(claimed.iter().all(|r| r.attempts == 1), "{claimed:?}");
    Ok(())
}

#[tokio::test]
async fn a_retention_keeps_published_rows_until_they_are_older_than_it() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    queries::insert_many(&mut conn, &jobs(&setup.topic, 4)?).await?;
    let relay = setup.relay(100)?.with_retention(Duration::from_secs(3600));
    assert_eq!(relay.run_once().await?, 4);
    assert_eq!(count_with_status(&mut conn, "published").await?, 4);
    assert_eq!(relay.purge().await?, 0, "younger than the retention");

    // Two of them published two hours ago: past the hour, so those two go.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE outbox SET published_at = now() - interval '2 hours' \
              WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 2)",
        ),
        &mut conn,
    )
    .await?;
    assert_eq!(relay.purge().await?, 2);
    assert_eq!(count_with_status(&mut conn, "published").await?, 2);
    assert_eq!(count_records(&setup.config.kafka, &setup.topic).await?, 4);
    Ok(())
}

#[tokio::test]
async fn without_a_retention_rows_an_older_release_kept_are_purged() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    // Published the old way (kept), plus one still pending.
    let ids = queries::insert_many(&mut conn, &jobs(&setup.topic, 3)?).await?;
    queries::mark_published(&mut conn, &ids[..2]).await?;
    let relay = setup.relay(100)?;
    assert_eq!(relay.purge().await?, 2);
    assert_eq!(count_rows(&mut conn).await?, 1);
    assert_eq!(
        queries::count_pending(&mut conn).await?,
        1,
        "pending rows are never purged"
    );
    Ok(())
}
