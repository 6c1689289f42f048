//! Which mailboxes this replica watches: every round it renews its leases, stops watching
//! what it no longer holds, claims unwatched mailboxes up to its share, and starts a task
//! per mailbox. At shutdown it stops the tasks and gives the leases up, so another replica
//! takes over at once instead of after the lease runs out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::db::inbox;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::watch::{self, Shared};

struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Runs until `shutdown`, then stops every watch and releases the leases.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let settings = &shared.settings;
    let lease = Duration::from_secs(settings.lease_seconds);
    let interval = Duration::from_millis(settings.claim_interval_ms);
    let mut tasks: HashMap<Uuid, Task> = HashMap::new();
    loop {
        if let Err(error) = round(&shared, &mut tasks, lease).await {
            metrics::counter!("inbox_watcher_lease_round_failures_total").increment(1);
            tracing::warn!(
                error = format!("{error:#}"),
                "renewing and claiming leases failed"
            );
        }
        metrics::gauge!("inbox_watcher_mailboxes").set(tasks.len() as f64);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    for task in tasks.values() {
        task.cancel.cancel();
    }
    let ids: Vec<Uuid> = tasks.keys().copied().collect();
    for (_, task) in tasks.drain() {
        let _ = task.handle.await;
    }
    metrics::gauge!("inbox_watcher_mailboxes").set(0.0);
    match shared.pool.get().await {
        Ok(mut conn) => {
            if let Err(error) = inbox::release(&mut conn, &shared.owner, &ids).await {
                tracing::warn!(%error, "could not release the leases; they run out instead");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "could not release the leases; they run out instead");
        }
    }
}

async fn round(
    shared: &Arc<Shared>,
    tasks: &mut HashMap<Uuid, Task>,
    lease: Duration,
) -> anyhow::Result<()> {
    // A task that ended by itself (its mailbox is not ours any more) is started again below
    // only if the lease says it still is.
    tasks.retain(|_, task| !task.handle.is_finished());
    let mut conn = shared.pool.get().await?;
    inbox::add_missing(&mut conn).await?;
    let held: HashSet<Uuid> = inbox::renew(&mut conn, &shared.owner, lease)
        .await?
        .into_iter()
        .collect();
    tasks.retain(|id, task| {
        let keep = held.contains(id);
        if !keep {
            task.cancel.cancel();
        }
        keep
    });
    let room = usize::try_from(shared.settings.max_mailboxes)
        .unwrap_or(usize::MAX)
        .saturating_sub(held.len());
    let claimed = if room > 0 {
        let limit = shared
            .settings
            .claims_per_round
            .min(u32::try_from(room).unwrap_or(u32::MAX));
        inbox::claim(&mut conn, &shared.owner, lease, limit).await?
    } else {
        Vec::new()
    };
    drop(conn);
    for id in held.into_iter().chain(claimed) {
        if tasks.contains_key(&id) {
            continue;
        }
        tracing::info!(mailbox.id = %id, owner = %shared.owner, "watching mailbox");
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(watch::run(Arc::clone(shared), id, cancel.clone()));
        tasks.insert(id, Task { cancel, handle });
    }
    Ok(())
}
