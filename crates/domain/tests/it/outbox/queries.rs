//! The outbox queries: set-based insert, claims that skip locked rows, and the conditional
//! status changes.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use domain::db::outbox::{self as queries, NewOutboxRecord};
use domain::db::schema::outbox;
use domain::testing::TestDatabase;
use serde_json::json;
use tokio::sync::oneshot;

fn record(n: u32) -> NewOutboxRecord {
    NewOutboxRecord {
        topic: "jobs".to_owned(),
        key: format!("key-{}", n % 2),
        payload: json!({"n": n}),
        headers: json!({"traceparent": format!("00-{n:032x}-{n:016x}-01")}),
    }
}

#[tokio::test]
async fn insert_many_writes_pending_rows_in_the_order_given() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let given: Vec<NewOutboxRecord> = (0..500).map(record).collect();

    let ids = queries::insert_many(&mut conn, &given).await?;
    assert_eq!(ids.len(), 500);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not ascending");
    assert!(queries::insert_many(&mut conn, &[]).await?.is_empty());
    assert_eq!(queries::count_pending(&mut conn).await?, 500);

    let claimed = conn
        .transaction(async |tx| queries::claim_pending(tx, 1000).await)
        .await?;
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    for (row, given) in claimed.iter().zip(&given) {
        assert_eq!(row.topic, given.topic);
        assert_eq!(row.message_key.as_deref(), Some(given.key.as_str()));
        assert_eq!(row.payload, given.payload);
        assert_eq!(row.headers, given.headers);
        assert_eq!(row.attempts, 0);
    }
    Ok(())
}

#[tokio::test]
async fn a_claim_skips_rows_another_transaction_holds() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let ids = queries::insert_many(&mut conn, &(0..5).map(record).collect::<Vec<_>>()).await?;

    let (claimed_tx, claimed_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let mut holder_conn = db.connect().await?;
    let holder = tokio::spawn(async move {
        holder_conn
            .transaction(async |tx| -> anyhow::Result<()> {
                let rows = queries::claim_pending(tx, 3).await?;
                let _ = claimed_tx.send(rows.iter().map(|r| r.id).collect::<Vec<_>>());
                // Hold the locks until the other claim has run.
                let _ = release_rx.await;
                Ok(())
            })
            .await
    });

    let held = claimed_rx.await?;
    assert_eq!(held, ids[..3]);
    let other = conn
        .transaction(async |tx| queries::claim_pending(tx, 10).await)
        .await?;
    assert_eq!(other.iter().map(|r| r.id).collect::<Vec<_>>(), ids[3..]);

    let _ = release_tx.send(());
    holder.await??;
    Ok(())
}

#[tokio::test]
async fn failures_count_attempts_and_published_rows_are_not_claimed_again() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let ids = queries::insert_many(&mut conn, &(0..4).map(record).collect::<Vec<_>>()).await?;

    assert_eq!(
        queries::record_failure(&mut conn, &ids[..2], "broker down").await?,
        2
    );
    assert_eq!(
        queries::record_failure(&mut conn, &ids[..1], "still down").await?,
        1
    );
    let failures: Vec<(i64, i32, Option<String>)> = outbox::table
        .select((outbox::id, outbox::attempts, outbox::last_error))
        .filter(outbox::attempts.gt(0))
        .order(outbox::id)
        .load(&mut conn)
        .await?;
    assert_eq!(
        failures,
        vec![
            (ids[0], 2, Some("still down".to_owned())),
            (ids[1], 1, Some("broker down".to_owned())),
        ]
    );

    assert_eq!(queries::mark_published(&mut conn, &ids[..3]).await?, 3);
    // Conditional: publishing again changes nothing, and a published row counts no failure.
    assert_eq!(queries::mark_published(&mut conn, &ids[..3]).await?, 0);
    assert_eq!(
        queries::record_failure(&mut conn, &ids[..1], "late").await?,
        0
    );
    assert_eq!(queries::count_pending(&mut conn).await?, 1);
    let published_at: Vec<Option<chrono::DateTime<chrono::Utc>>> = outbox::table
        .select(outbox::published_at)
        .filter(outbox::id.eq_any(&ids[..3]))
        .load(&mut conn)
        .await?;
    assert!(published_at.iter().all(Option::is_some));

    let left = conn
        .transaction(async |tx| queries::claim_pending(tx, 10).await)
        .await?;
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), ids[3..]);
    Ok(())
}
