//! The send jobs' outbox (`send_jobs`) and its relay against the shared broker: each job
//! published once as the worker reads it, several relays at once, a job committed after a
//! larger id went out, and an unreachable broker.

use std::collections::HashSet;
use std::time::Duration;

use diesel_async::AsyncConnection as _;
use diesel_async::RunQueryDsl as _;
use domain::db::send_jobs::{self, NewSendJob, SendJobRow};
use domain::events::EmailJob;
use domain::kafka::{Envelope, Producer};
use domain::outbox::{JobRelay, RelayError};
use domain::testing::{count_records, poll_until};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{DEADLINE, Setup, published_by_id, setup};

fn relay(setup: &Setup, batch_size: u32) -> anyhow::Result<JobRelay> {
    Ok(JobRelay::new(
        setup.pool.clone(),
        Producer::new(&setup.config.kafka)?,
        setup.topic.clone(),
        batch_size,
        Duration::from_millis(50),
    ))
}

async fn queued(conn: &mut diesel_async::AsyncPgConnection) -> anyhow::Result<Vec<SendJobRow>> {
    Ok(diesel::sql_query(
        "SELECT id, message_id, workspace_id, enrollment_id, mailbox_id, attempt, headers, \
                created_at FROM send_jobs ORDER BY id",
    )
    .load(conn)
    .await?)
}

/// `n` jobs over four mailboxes, first attempts.
fn new_jobs(n: usize) -> Vec<NewSendJob> {
    let workspace_id = Uuid::now_v7();
    let mailboxes: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    (0..n)
        .map(|i| NewSendJob {
            message_id: Uuid::now_v7(),
            workspace_id,
            enrollment_id: Uuid::now_v7(),
            mailbox_id: mailboxes[i % mailboxes.len()],
            attempt: 1,
        })
        .collect()
}

#[tokio::test]
async fn each_job_is_published_once_keyed_by_its_mailbox_and_then_deleted() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    let mut jobs = new_jobs(4);
    // The same message's next attempt is another job, with another envelope id.
    jobs.push(NewSendJob {
        attempt: 2,
        ..jobs[0]
    });
    send_jobs::insert_many(&mut conn, &jobs).await?;

    let relay = relay(&setup, 100)?;
    assert_eq!(relay.run_once().await?, 5);
    assert_eq!(
        relay.run_once().await?,
        0,
        "a published job was taken again"
    );
    assert_eq!(send_jobs::count_pending(&mut conn).await?, 0);

    assert_eq!(count_records(&setup.config.kafka, &setup.topic).await?, 5);
    let (published, repeated) = published_by_id(&setup.config, &setup.topic).await?;
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
    for job in &jobs {
        let id = send_jobs::envelope_id(job.message_id, job.attempt);
        let record = published
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("job {job:?} not published"))?;
        let mailbox = job.mailbox_id.to_string();
        assert_eq!(record.key.as_deref(), Some(mailbox.as_str()));
        let envelope = Envelope::<EmailJob>::from_json(&record.payload)?;
        assert_eq!(envelope.workspace_id, job.workspace_id);
        let EmailJob::Send(send) = envelope.body;
        assert_eq!(
            (
                send.message_id,
                send.enrollment_id,
                send.mailbox_id,
                send.attempt
            ),
            (
                job.message_id,
                job.enrollment_id,
                job.mailbox_id,
                u32::try_from(job.attempt)?
            )
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_job_relays_publish_each_of_2000_jobs_exactly_once() -> anyhow::Result<()> {
    let setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    let jobs = new_jobs(2000);
    for chunk in jobs.chunks(500) {
        send_jobs::insert_many(&mut conn, chunk).await?;
    }

    let shutdown = CancellationToken::new();
    let replicas: Vec<_> = (0..2)
        .map(|_| Ok(tokio::spawn(relay(&setup, 50)?.run(shutdown.clone()))))
        .collect::<anyhow::Result<_>>()?;
    poll_until(DEADLINE, "every job to be published", || async {
        let mut conn = setup.db.connect().await.ok()?;
        (send_jobs::count_pending(&mut conn).await.ok()? == 0).then_some(())
    })
    .await?;
    shutdown.cancel();
    for replica in replicas {
        replica.await?;
    }

    assert_eq!(
        count_records(&setup.config.kafka, &setup.topic).await?,
        2000
    );
    let (published, repeated) = published_by_id(&setup.config, &setup.topic).await?;
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
    let expected: HashSet<Uuid> = jobs
        .iter()
        .map(|j| send_jobs::envelope_id(j.message_id, j.attempt))
        .collect();
    assert_eq!(published.keys().copied().collect::<HashSet<_>>(), expected);
    Ok(())
}

#[tokio::test]
async fn a_job_committed_after_a_larger_id_was_published_is_still_published() -> anyhow::Result<()>
{
    let setup = setup().await?;
    let jobs = new_jobs(2);
    let (early, late) = (jobs[0], jobs[1]);

    // A transaction queues its job and stays open...
    let (inserted_tx, inserted_rx) = oneshot::channel();
    let (commit_tx, commit_rx) = oneshot::channel::<()>();
    let mut slow_conn = setup.db.connect().await?;
    let slow = tokio::spawn(async move {
        slow_conn
            .transaction(async |tx| -> anyhow::Result<()> {
                send_jobs::insert_many(tx, &[early]).await?;
                let _ = inserted_tx.send(());
                let _ = commit_rx.await;
                Ok(())
            })
            .await
    });
    inserted_rx.await?;

    // ...while a later one commits and is published.
    let mut conn = setup.db.connect().await?;
    send_jobs::insert_many(&mut conn, &[late]).await?;
    let relay = relay(&setup, 100)?;
    assert_eq!(relay.run_once().await?, 1);

    let _ = commit_tx.send(());
    slow.await??;
    assert_eq!(relay.run_once().await?, 1);
    assert_eq!(send_jobs::count_pending(&mut conn).await?, 0);
    let (published, _) = published_by_id(&setup.config, &setup.topic).await?;
    for job in &jobs {
        assert!(published.contains_key(&send_jobs::envelope_id(job.message_id, job.attempt)));
    }
    Ok(())
}

#[tokio::test]
async fn jobs_kafka_did_not_acknowledge_stay_queued_in_their_place() -> anyhow::Result<()> {
    let mut setup = setup().await?;
    let mut conn = setup.db.connect().await?;
    send_jobs::insert_many(&mut conn, &new_jobs(3)).await?;
    let before = queued(&mut conn).await?;
    assert_eq!(before.len(), 3);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    setup.config.kafka.brokers = closed.to_string();
    setup.config.kafka.request_timeout_ms = 500;
    let relay = relay(&setup, 100)?;

    match relay.run_once().await {
        Err(RelayError::Publish {
            claimed: 3,
            published: 0,
            failed: 3,
            ..
        }) => {}
        other => anyhow::bail!("expected 3 failed jobs, got {other:?}"),
    }
    let after = queued(&mut conn).await?;
    assert_eq!(after, before, "put back as they were, ids included");
    Ok(())
}
