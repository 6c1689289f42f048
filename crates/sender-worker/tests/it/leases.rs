//! The worker's two updates of a message (the claim, the outcome) are heap-only (HOT): no
//! index of `messages` refers to a column they change, so they add no index entry. Its lease
//! lives in `message_leases`, where the reaper finds the expired ones.

use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use diesel::OptionalExtension as _;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::db::sending::{self, SentRow, Settled, SettledRow};
use domain::testing::poll_until;
use uuid::Uuid;

use crate::world::{Step, World, greenmail_smtp};

const STEP: Step = Step {
    subject: "Hello",
    content: "Hi, a short note.",
    thread_with_previous: false,
};

#[derive(diesel::QueryableByName)]
struct Updates {
    #[diesel(sql_type = BigInt)]
    updated: i64,
    #[diesel(sql_type = BigInt)]
    hot: i64,
}

/// `messages`' update counters, once the statistics of at least `at_least` updates reached
/// the server (a backend flushes them asynchronously, when idle: `flushing` asks its session
/// to flush at its next chance).
async fn message_updates(
    flushing: &mut AsyncPgConnection,
    world: &World,
    at_least: i64,
) -> anyhow::Result<Updates> {
    diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(flushing)
        .await?;
    poll_until(
        Duration::from_secs(20),
        &format!("statistics of {at_least} updates of messages"),
        || async {
            let mut conn = world.conn().await.ok()?;
            diesel::sql_query(
                "SELECT n_tup_upd AS updated, n_tup_hot_upd AS hot \
                   FROM pg_stat_user_tables WHERE relname = 'messages'",
            )
            .get_result::<Updates>(&mut conn)
            .await
            .ok()
            .filter(|u| u.updated >= at_least)
        },
    )
    .await
}

async fn leases(world: &World) -> anyhow::Result<Vec<(Uuid, DateTime<Utc>)>> {
    #[derive(diesel::QueryableByName)]
    struct Lease {
        #[diesel(sql_type = SqlUuid)]
        message_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        lease_expires_at: DateTime<Utc>,
    }
    let rows: Vec<Lease> = diesel::sql_query(
        "SELECT message_id, lease_expires_at FROM message_leases ORDER BY message_id",
    )
    .load(&mut world.conn().await?)
    .await?;
    Ok(rows
        .into_iter()
        .map(|l| (l.message_id, l.lease_expires_at))
        .collect())
}

#[tokio::test]
async fn claiming_and_marking_sent_are_heap_only_updates() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let mut ids = world.enroll_many(250, "hot", "example.org").await?;
    ids.sort_unstable();
    // The worst case, as under load: a transaction open throughout keeps every old version
    // from being pruned, so each page must hold all three versions of its rows.
    let mut other = world.conn().await?;
    diesel::sql_query("BEGIN").execute(&mut other).await?;
    diesel::sql_query("SELECT txid_current()")
        .execute(&mut other)
        .await?;
    let mut conn = world.conn().await?;
    let now = Utc::now().trunc_subsecs(6);
    let lease = now + TimeDelta::minutes(5);

    let claimed = sending::claim(&mut conn, &ids, "worker-a", now, lease).await?;
    assert_eq!(claimed.len(), ids.len());
    let leased = leases(&world).await?;
    assert!(
        leased.iter().map(|l| l.0).eq(ids.iter().copied()),
        "one lease per claimed message"
    );
    assert!(leased.iter().all(|l| l.1 == lease), "{leased:?}");

    let sent_at = Utc::now().trunc_subsecs(6);
    let rows: Vec<SentRow> = claimed
        .iter()
        .map(|m| SentRow {
            id: m.id,
            mailbox_id: m.mailbox_id,
            sent_at,
            reply: "250 2.0.0 Ok: queued as 4Bq1x".to_owned(),
            subject: "Hello".to_owned(),
        })
        .collect();
    let marked = conn
        .transaction(async |tx| sending::mark_sent(tx, &rows, "worker-a", sent_at).await)
        .await?;
    assert_eq!(marked.len(), ids.len());
    assert!(
        leases(&world).await?.is_empty(),
        "the outcome ends the lease"
    );

    let updates = message_updates(&mut conn, &world, 2 * 250).await?;
    assert_eq!(
        (updates.updated, updates.hot),
        (2 * 250, 2 * 250),
        "the claim and the outcome, each a heap-only update"
    );
    diesel::sql_query("COMMIT").execute(&mut other).await?;
    Ok(())
}

#[tokio::test]
async fn the_reaper_finds_expired_leases_in_their_table() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let mut ids = world.enroll_many(4, "reaped", "example.org").await?;
    ids.sort_unstable();
    let (expiring, live) = ids.split_at(2);
    let mut conn = world.conn().await?;
    let now = Utc::now().trunc_subsecs(6);
    sending::claim(
        &mut conn,
        expiring,
        "dead",
        now,
        now + TimeDelta::seconds(1),
    )
    .await?;
    sending::claim(&mut conn, live, "alive", now, now + TimeDelta::minutes(5)).await?;
    // A lease whose message is no longer `sending` (moved on by a path that does not hold a
    // lease) or no longer exists is dropped, not reported.
    world
        .exec(&format!(
            "UPDATE messages SET status = 'failed' WHERE id = '{}'",
            expiring[1]
        ))
        .await?;
    let vanished = Uuid::now_v7();
    world
        .exec(&format!(
            "INSERT INTO message_leases (message_id, lease_expires_at) \
             VALUES ('{vanished}', '{}')",
            now - TimeDelta::minutes(1)
        ))
        .await?;

    let later = now + TimeDelta::seconds(2);
    let expired = sending::expire_leases(&mut conn, later, 10).await?;
    assert_eq!(
        expired
            .iter()
            .map(|a| (a.id, a.worker_id.as_deref()))
            .collect::<Vec<_>>(),
        [(expiring[0], Some("dead"))]
    );
    let row = world.message(expiring[0]).await?;
    assert_eq!(row.status, "unknown");
    assert_eq!(world.message(expiring[1]).await?.status, "failed");
    let remaining: Vec<Uuid> = leases(&world).await?.into_iter().map(|l| l.0).collect();
    let mut live_sorted = live.to_vec();
    live_sorted.sort_unstable();
    assert_eq!(remaining, live_sorted, "only the live leases are left");
    assert!(
        sending::expire_leases(&mut conn, later, 10)
            .await?
            .is_empty()
    );

    // The live worker's outcomes still land; every one ends its lease, a retry awaited too
    // (`sending` with no worker, as before: nothing expires it).
    let settled = sending::settle(
        &mut conn,
        &[SettledRow {
            id: live[0],
            outcome: Settled::AwaitingRetry,
            error: "421 try later".to_owned(),
        }],
        "alive",
        later,
    )
    .await?;
    assert_eq!(settled, [live[0]]);
    let row = world.message(live[0]).await?;
    assert_eq!((row.status.as_str(), row.worker_id), ("sending", None));
    let remaining: Vec<Uuid> = leases(&world).await?.into_iter().map(|l| l.0).collect();
    assert_eq!(remaining, [live[1]]);
    let far = now + TimeDelta::hours(1);
    let expired = sending::expire_leases(&mut conn, far, 10).await?;
    assert_eq!(
        expired.iter().map(|a| a.id).collect::<Vec<_>>(),
        [live[1]],
        "the retry awaited is not the reaper's"
    );
    assert_eq!(world.message(live[0]).await?.status, "sending");
    assert!(leases(&world).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_late_outcome_leaves_the_next_claims_lease_alone() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let ids = world.enroll_many(1, "late", "example.org").await?;
    let mut conn = world.conn().await?;
    let now = Utc::now().trunc_subsecs(6);
    sending::claim(&mut conn, &ids, "slow", now, now + TimeDelta::seconds(1)).await?;
    let later = now + TimeDelta::seconds(2);
    assert_eq!(sending::expire_leases(&mut conn, later, 10).await?.len(), 1);
    // Resolved as not sent and queued again, then claimed by another worker.
    world
        .exec(&format!(
            "UPDATE messages SET status = 'queued' WHERE id = '{}'",
            ids[0]
        ))
        .await?;
    let lease = later + TimeDelta::minutes(5);
    assert_eq!(
        sending::claim(&mut conn, &ids, "fast", later, lease)
            .await?
            .len(),
        1
    );

    let late = SentRow {
        id: ids[0],
        mailbox_id: world.mailbox_id,
        sent_at: later,
        reply: "250 ok".to_owned(),
        subject: "Hello".to_owned(),
    };
    assert!(
        sending::mark_sent(&mut conn, &[late], "slow", later)
            .await?
            .is_empty()
    );
    assert_eq!(leases(&world).await?, [(ids[0], lease)]);
    Ok(())
}

#[tokio::test]
async fn a_mailbox_remembers_its_first_send() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let ids = world.enroll_many(3, "first", "example.org").await?;
    let mut conn = world.conn().await?;
    let now = Utc::now().trunc_subsecs(6);
    let claimed = sending::claim(&mut conn, &ids, "w", now, now + TimeDelta::minutes(5)).await?;
    let first_sent = async || -> anyhow::Result<Option<DateTime<Utc>>> {
        #[derive(diesel::QueryableByName)]
        struct First {
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            first_sent_at: DateTime<Utc>,
        }
        let row: Option<First> = diesel::sql_query(
            "SELECT first_sent_at FROM mailbox_first_sends WHERE mailbox_id = $1",
        )
        .bind::<SqlUuid, _>(world.mailbox_id)
        .get_result(&mut world.conn().await?)
        .await
        .optional()?;
        Ok(row.map(|r| r.first_sent_at))
    };
    assert_eq!(first_sent().await?, None);

    let at = |seconds: i64| (now + TimeDelta::seconds(seconds)).trunc_subsecs(6);
    let row = |i: usize, sent_at: DateTime<Utc>| SentRow {
        id: claimed[i].id,
        mailbox_id: world.mailbox_id,
        sent_at,
        reply: "250 ok".to_owned(),
        subject: "Hello".to_owned(),
    };
    // Batches recorded out of order (two workers): the earliest send wins.
    sending::mark_sent(&mut conn, &[row(0, at(20))], "w", at(21)).await?;
    assert_eq!(first_sent().await?, Some(at(20)));
    sending::mark_sent(&mut conn, &[row(1, at(15)), row(2, at(30))], "w", at(31)).await?;
    assert_eq!(first_sent().await?, Some(at(15)));
    Ok(())
}
