//! Watching one mailbox while this replica holds its lease: connect, choose its folders
//! ([`folders`]), catch each up from its stored position, then wait for new mail (IDLE on the
//! first folder, bounded by `poll_interval_ms` when there are others) and catch up again,
//! until cancelled. One connection per mailbox, opening one folder at a time. A failure is
//! recorded on the watch (the API shows it), counted, and followed by a growing pause.
//!
//! Each batch of fetched emails is recorded in one transaction: the events' outbox rows and
//! the folder's new position together, fenced by the mailbox's lease. A crash before the
//! commit reads the batch again; after it, never again. So a restart neither misses nor
//! repeats an email.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use diesel_async::AsyncConnection as _;
use domain::crypto::SecretCipher;
use domain::db::PgPool;
use domain::db::inbox::{self, FolderPosition, WatchedMailbox};
use domain::db::mailboxes::imap_password_context;
use domain::db::outbox::{self, NewOutboxRecord};
use domain::events::{FoundBy, MailboxEvent};
use domain::kafka::Envelope;
use domain::mail::imap::ConnectError;
use domain::mail::{self, Login, Security, Server};
use domain::oauth::{AccessError, AccessToken, AccessTokens};
use domain::outbound::{self, OutboundGuard};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::classify;
use super::folders;
use super::matching::{self, Position};
use super::reader::{Fetched, Reader, Selected, Woken};
use domain::config::InboxWatcherConfig;

/// What every mailbox task shares.
pub struct Shared {
    pub pool: PgPool,
    pub cipher: SecretCipher,
    /// The access tokens of mailboxes connected with OAuth.
    pub tokens: AccessTokens,
    /// Makes every IMAP connection: mailbox hosts are tenants' choices (`domain::outbound`).
    pub outbound: OutboundGuard,
    pub settings: InboxWatcherConfig,
    pub owner: String,
    pub events_topic: String,
    /// Where `MailboxEvent::Failing` goes when a refused host puts a mailbox in `error`.
    pub mailbox_events_topic: String,
}

/// Why a watch ended for good (anything else is retried).
#[derive(Debug)]
enum Ended {
    Cancelled,
    /// Another replica holds the mailbox now, or it is no longer watchable.
    NotOurs,
}

#[derive(Debug)]
enum Failure {
    /// Worth telling the mailbox's owner (connection, login, server behaviour).
    Mailbox(String),
    /// The outbound guard refused the IMAP host (it resolves to a non-public address that is
    /// not allowed): shown on the watch and on the mailbox, which goes to `error` (announced
    /// on `mailbox-events`).
    Refused(String),
    /// Ours (database, encoding): logged, not shown as the mailbox's problem.
    Internal(anyhow::Error),
    /// The OAuth provider no longer accepts the mailbox's grant: it waits for a reconnect.
    ReconnectRequired,
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Internal(e.into())
    }
}

impl From<domain::db::PoolError> for Failure {
    fn from(e: domain::db::PoolError) -> Self {
        Failure::Internal(e.into())
    }
}

/// Watches `mailbox_id` until `cancel`, or until it is no longer this replica's.
pub async fn run(shared: Arc<Shared>, mailbox_id: Uuid, cancel: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        match session(&shared, mailbox_id, &cancel, &mut failures).await {
            Ok(Ended::Cancelled) => return,
            Ok(Ended::NotOurs) => {
                tracing::info!(mailbox.id = %mailbox_id, "mailbox no longer watched here");
                return;
            }
            Err(failure) => {
                failures = failures.saturating_add(1);
                let message = match &failure {
                    Failure::Mailbox(message) | Failure::Refused(message) => message.clone(),
                    Failure::Internal(error) => format!("{error:#}"),
                    Failure::ReconnectRequired => "the mailbox must be connected again".to_owned(),
                };
                metrics::counter!("inbox_watcher_failures_total", "kind" => match failure {
                    Failure::Mailbox(_) => "mailbox",
                    Failure::Refused(_) => "refused",
                    Failure::Internal(_) => "internal",
                    Failure::ReconnectRequired => "reconnect_required",
                })
                .increment(1);
                tracing::warn!(mailbox.id = %mailbox_id, failures, error = %message,
                               "watching the mailbox failed; retrying after a pause");
                if let Failure::Mailbox(message) | Failure::Refused(message) = &failure
                    && let Ok(mut conn) = shared.pool.get().await
                {
                    let _ =
                        inbox::record_failure(&mut conn, mailbox_id, &shared.owner, message).await;
                    if matches!(failure, Failure::Refused(_)) {
                        let reason = format!("inbox watcher: {message}");
                        if let Err(error) =
                            fail_mailbox(&shared, &mut conn, mailbox_id, &reason).await
                        {
                            tracing::warn!(mailbox.id = %mailbox_id, error = format!("{error:#}"),
                                           "could not put the mailbox in error");
                        }
                    }
                }
                let pause = backoff(&shared.settings, failures);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Puts the mailbox in `error` with `reason` and, when that changed its status, announces it
/// (`MailboxEvent::Failing` on `mailbox-events`) in the same transaction: the next failure of
/// a mailbox already in `error` announces nothing.
async fn fail_mailbox(
    shared: &Shared,
    conn: &mut diesel_async::AsyncPgConnection,
    mailbox_id: Uuid,
    reason: &str,
) -> anyhow::Result<()> {
    let changed = conn
        .transaction(async |tx| -> anyhow::Result<bool> {
            let Some(workspace_id) =
                inbox::mark_mailbox_failing(tx, mailbox_id, &shared.owner, reason).await?
            else {
                return Ok(false);
            };
            let event = MailboxEvent::Failing {
                mailbox_id,
                reason: reason.to_owned(),
                found_by: FoundBy::Inbox,
            };
            let record = NewOutboxRecord::from_envelope(
                &shared.mailbox_events_topic,
                mailbox_id.to_string(),
                &Envelope::new(workspace_id, event),
            )?;
            outbox::insert_many(tx, std::slice::from_ref(&record)).await?;
            Ok(true)
        })
        .await?;
    if changed {
        tracing::warn!(mailbox.id = %mailbox_id, reason, "the mailbox is now in error");
    }
    Ok(())
}

/// One connection's life: everything until it fails or the watch ends.
async fn session(
    shared: &Shared,
    mailbox_id: Uuid,
    cancel: &CancellationToken,
    failures: &mut u32,
) -> Result<Ended, Failure> {
    let mut conn = shared.pool.get().await?;
    let Some(mailbox) = inbox::load(&mut conn, mailbox_id, &shared.owner).await? else {
        return Ok(Ended::NotOurs);
    };
    let positions = inbox::positions(&mut conn, mailbox_id).await?;
    inbox::set_status(&mut conn, mailbox_id, &shared.owner, "connecting").await?;
    drop(conn);
    let (server, mut login, token) = match connection(shared, &mailbox).await {
        Ok(connection) => connection,
        // The grant is gone: the mailbox is `reconnect_required`, no longer watchable.
        Err(Failure::ReconnectRequired) => return Ok(Ended::NotOurs),
        Err(failure) => return Err(failure),
    };
    let mut opened = tokio::select! {
        () = cancel.cancelled() => return Ok(Ended::Cancelled),
        opened = Reader::open(&shared.outbound, &server, &login, &shared.settings) => opened,
    };
    // A refused access token may have expired early or been replaced: one more try with a
    // refreshed one (one refresh per token generation across all replicas).
    if let (Err(ConnectError::LoginRejected(_)), Some(token)) = (&opened, &token) {
        metrics::counter!("oauth_token_rejections_total", "protocol" => "imap").increment(1);
        login = match shared
            .tokens
            .after_rejection(mailbox_id, token.generation)
            .await
        {
            Ok(token) => token.login(),
            Err(AccessError::ReconnectRequired { .. }) => return Ok(Ended::NotOurs),
            Err(error) => return Err(Failure::Mailbox(error.to_string())),
        };
        opened = tokio::select! {
            () = cancel.cancelled() => return Ok(Ended::Cancelled),
            opened = Reader::open(&shared.outbound, &server, &login, &shared.settings) => opened,
        };
    }
    let mut reader = opened.map_err(|error| match error {
        ConnectError::Refused => Failure::Refused(format!(
            "IMAP server {}:{}: {}",
            server.host,
            server.port,
            outbound::REFUSED
        )),
        ConnectError::LoginRejected(message) | ConnectError::Failed(message) => {
            Failure::Mailbox(mail::redact(&message, Some(&login)))
        }
    })?;
    let result = watch(
        shared,
        &mailbox,
        &login,
        &mut reader,
        &positions,
        cancel,
        failures,
    )
    .await;
    reader.close().await;
    result
}

/// One folder being read: where it stands.
#[derive(Debug, Clone)]
struct Folder {
    name: String,
    /// The UIDVALIDITY `last_uid` counts under; `None` before the folder was first read.
    uid_validity: Option<u32>,
    last_uid: u32,
}

impl Folder {
    fn new(name: String, positions: &[FolderPosition]) -> Self {
        let stored = positions.iter().find(|p| p.folder == name);
        Self {
            uid_validity: stored.and_then(|p| u32::try_from(p.uid_validity).ok()),
            last_uid: stored.map_or(0, |p| u32::try_from(p.last_uid).unwrap_or(u32::MAX)),
            name,
        }
    }
}

/// The folders this connection reads (see [`folders`](super::folders)), the first waited on;
/// those in `reading` keep where they stand, the others start from their stored `positions`.
async fn folders(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    reader: &mut Reader,
    positions: &[FolderPosition],
    reading: &[Folder],
) -> Result<Vec<Folder>, String> {
    let listed = reader.list().await?;
    let settings = &shared.settings;
    let chosen = folders::choose(
        &settings.folder,
        &settings.folders,
        reader.special_use(),
        &listed,
    );
    if !chosen.missing.is_empty() {
        tracing::warn!(mailbox.id = %mailbox.mailbox_id, missing = ?chosen.missing,
                       "configured folders the mailbox lacks are skipped");
    }
    if chosen.read.is_empty() {
        return Err(format!(
            "none of the folders in inbox_watcher.folders exists in this mailbox ({})",
            chosen.missing.join(", ")
        ));
    }
    if reading.iter().map(|f| &f.name).ne(chosen.read.iter()) {
        tracing::info!(mailbox.id = %mailbox.mailbox_id, folders = ?chosen.read,
                       "reading folders");
    }
    Ok(chosen
        .read
        .into_iter()
        .map(|name| match reading.iter().find(|f| f.name == name) {
            Some(folder) => folder.clone(),
            None => Folder::new(name, positions),
        })
        .collect())
}

async fn watch(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    login: &Login,
    reader: &mut Reader,
    positions: &[FolderPosition],
    cancel: &CancellationToken,
    failures: &mut u32,
) -> Result<Ended, Failure> {
    let imap_error = |e: String| Failure::Mailbox(mail::redact(&e, Some(login)));
    let mut folders = folders(shared, mailbox, reader, positions, &[])
        .await
        .map_err(imap_error)?;
    let mut listed_at = Instant::now();
    let waiting = if reader.uses_idle() {
        "idle"
    } else {
        "polling"
    };
    // IDLE watches one folder: with others to read, it ends in time to look at them.
    let idle_timeout = Duration::from_secs(shared.settings.idle_timeout_seconds);
    loop {
        // A Junk folder created while connected is found at the next listing.
        if listed_at.elapsed() >= idle_timeout {
            folders = self::folders(shared, mailbox, reader, positions, &folders)
                .await
                .map_err(imap_error)?;
            listed_at = Instant::now();
        }
        for folder in &mut folders {
            if !look(shared, mailbox, login, reader, folder).await? {
                return Ok(Ended::NotOurs);
            }
        }
        if let Some(first) = folders.first() {
            reader.examine(&first.name).await.map_err(imap_error)?;
        }
        let mut conn = shared.pool.get().await?;
        if !inbox::set_status(&mut conn, mailbox.mailbox_id, &shared.owner, waiting).await? {
            return Ok(Ended::NotOurs);
        }
        drop(conn);
        *failures = 0;
        let idle_for = if folders.len() > 1 {
            idle_timeout.min(Duration::from_millis(shared.settings.poll_interval_ms))
        } else {
            idle_timeout
        };
        if reader.wait(cancel, idle_for).await.map_err(imap_error)? == Woken::Cancelled {
            return Ok(Ended::Cancelled);
        }
    }
}

/// Opens `folder` and reads what is new in it, recording each batch with its position.
/// False when the lease is no longer ours.
async fn look(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    login: &Login,
    reader: &mut Reader,
    folder: &mut Folder,
) -> Result<bool, Failure> {
    let imap_error = |e: String| Failure::Mailbox(mail::redact(&e, Some(login)));
    let selected = reader.examine(&folder.name).await.map_err(imap_error)?;
    if folder.uid_validity != Some(selected.uid_validity) {
        let Scan { uids, baseline } = scan(shared, mailbox, reader, folder, selected)
            .await
            .map_err(imap_error)?;
        let Some(last) = read(shared, mailbox, reader, &folder.name, selected, &uids, 0).await?
        else {
            return Ok(false);
        };
        // Later messages are read from the baseline on, even if none was found by date.
        let last = last.max(baseline);
        if (uids.is_empty() || last > uids.last().copied().unwrap_or(0))
            && !save(shared, mailbox, &folder.name, selected, last, &[]).await?
        {
            return Ok(false);
        }
        folder.uid_validity = Some(selected.uid_validity);
        folder.last_uid = last;
    }
    let uids = reader
        .uids_after(folder.last_uid)
        .await
        .map_err(imap_error)?;
    let Some(last) = read(
        shared,
        mailbox,
        reader,
        &folder.name,
        selected,
        &uids,
        folder.last_uid,
    )
    .await?
    else {
        return Ok(false);
    };
    folder.last_uid = last;
    Ok(true)
}

/// A first read of a folder, or a renumbered one: these UIDs (found by date), then on from
/// `baseline` (the highest UID when the scan began).
struct Scan {
    uids: Vec<u32>,
    baseline: u32,
}

async fn scan(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    reader: &mut Reader,
    folder: &Folder,
    selected: Selected,
) -> Result<Scan, String> {
    if folder.uid_validity.is_some() {
        tracing::warn!(mailbox.id = %mailbox.mailbox_id, folder = %folder.name,
                       "the folder's UIDVALIDITY changed; reading it again by date \
                        (events already recorded are not repeated)");
        metrics::counter!("inbox_watcher_uidvalidity_changes_total").increment(1);
    }
    let baseline = match selected.uid_next {
        Some(next) => next.saturating_sub(1),
        None => reader.highest_uid().await?,
    };
    // Nothing received before this mailbox first sent can answer us.
    let Some(first_sent) = mailbox.first_sent_at else {
        return Ok(Scan {
            uids: Vec::new(),
            baseline,
        });
    };
    let earliest = Utc::now()
        .checked_sub_days(Days::new(u64::from(shared.settings.first_scan_days)))
        .unwrap_or(first_sent);
    // IMAP dates have no time or zone: a day earlier covers any offset.
    let since = first_sent
        .max(earliest)
        .date_naive()
        .checked_sub_days(Days::new(1))
        .unwrap_or_else(|| first_sent.date_naive());
    let uids = reader.uids_since(since).await?;
    Ok(Scan { uids, baseline })
}

/// Reads `uids` of `folder` in batches, recording each batch's events with the position
/// after it. Returns the position after all of them (at least `from`), or `None` when the
/// lease is no longer ours.
async fn read(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    reader: &mut Reader,
    folder: &str,
    selected: Selected,
    uids: &[u32],
    from: u32,
) -> Result<Option<u32>, Failure> {
    let batch = usize::try_from(shared.settings.fetch_batch)
        .unwrap_or(50)
        .max(1);
    let mut last = from;
    for chunk in uids.chunks(batch) {
        let fetched = reader.fetch(chunk).await.map_err(Failure::Mailbox)?;
        let records = events(shared, mailbox, folder, selected, &fetched).await?;
        last = last.max(chunk.last().copied().unwrap_or(last));
        if !save(shared, mailbox, folder, selected, last, &records).await? {
            return Ok(None);
        }
    }
    Ok(Some(last))
}

/// The outbox records of the events in `fetched`.
async fn events(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    folder: &str,
    selected: Selected,
    fetched: &[Fetched],
) -> Result<Vec<NewOutboxRecord>, Failure> {
    let mut conn = shared.pool.get().await?;
    let mut records = Vec::new();
    for email in fetched {
        let classified = classify::classify(&email.raw);
        let kind = match &classified.kind {
            classify::Kind::Personal => "personal",
            classify::Kind::AutoReply { .. } => "auto_reply",
            classify::Kind::Bounce(_) => "bounce",
            classify::Kind::Complaint(_) => "complaint",
            classify::Kind::Ignored { .. } => "ignored",
        };
        metrics::counter!("inbox_watcher_emails_total", "kind" => kind).increment(1);
        let position = Position {
            mailbox_id: mailbox.mailbox_id,
            folder,
            uid_validity: selected.uid_validity,
            uid: email.uid,
        };
        let received_at = email.received_at.unwrap_or_else(Utc::now);
        let found =
            matching::events_for(&mut conn, mailbox, position, received_at, &classified).await?;
        for envelope in found {
            tracing::info!(mailbox.id = %mailbox.mailbox_id, folder, uid = email.uid,
                           enrollment.id = %envelope_enrollment(&envelope), kind,
                           "inbound email matched a sent message");
            let record = NewOutboxRecord::from_envelope(
                shared.events_topic.clone(),
                envelope_enrollment(&envelope).to_string(),
                &envelope,
            )
            .map_err(|e| Failure::Internal(e.into()))?;
            records.push(record);
        }
    }
    Ok(records)
}

fn envelope_enrollment(envelope: &domain::kafka::Envelope<domain::events::EmailEvent>) -> Uuid {
    use domain::events::EmailEvent;
    match &envelope.body {
        EmailEvent::Replied { message, .. }
        | EmailEvent::AutoReplied { message, .. }
        | EmailEvent::Bounced { message, .. }
        | EmailEvent::Complained { message } => message.enrollment_id,
        other => {
            // Only the kinds above are built by the watcher.
            tracing::error!(event = ?other, "unexpected event kind from the inbox watcher");
            Uuid::nil()
        }
    }
}

#[derive(Debug)]
enum SaveError {
    Db(diesel::result::Error),
    NotOurs,
}

impl From<diesel::result::Error> for SaveError {
    fn from(e: diesel::result::Error) -> Self {
        SaveError::Db(e)
    }
}

/// Records `records` and the position `last_uid` of `folder` in one transaction, if the
/// lease is still ours; false when it is not (nothing is written then).
async fn save(
    shared: &Shared,
    mailbox: &WatchedMailbox,
    folder: &str,
    selected: Selected,
    last_uid: u32,
    records: &[NewOutboxRecord],
) -> Result<bool, Failure> {
    let mut conn = shared.pool.get().await?;
    let outcome = conn
        .transaction(async |tx| -> Result<(), SaveError> {
            let ours = inbox::advance(
                tx,
                mailbox.mailbox_id,
                &shared.owner,
                folder,
                i64::from(selected.uid_validity),
                i64::from(last_uid),
            )
            .await?;
            if !ours {
                return Err(SaveError::NotOurs);
            }
            if !records.is_empty() {
                outbox::insert_many(tx, records).await?;
            }
            Ok(())
        })
        .await;
    match outcome {
        Ok(()) => {
            metrics::counter!("inbox_watcher_events_total").increment(records.len() as u64);
            Ok(true)
        }
        Err(SaveError::NotOurs) => Ok(false),
        Err(SaveError::Db(e)) => Err(e.into()),
    }
}

/// The server and login of the mailbox: its decrypted password (in memory only) or its
/// access token, with the token when it is one.
async fn connection(
    shared: &Shared,
    mailbox: &WatchedMailbox,
) -> Result<(Server, Login, Option<AccessToken>), Failure> {
    let port = u16::try_from(mailbox.imap_port).map_err(|_| {
        Failure::Mailbox(format!("IMAP port {} is out of range", mailbox.imap_port))
    })?;
    let security: Security = mailbox.imap_security.parse().map_err(|_| {
        Failure::Mailbox(format!("unknown IMAP security `{}`", mailbox.imap_security))
    })?;
    let server = Server {
        host: mailbox.imap_host.clone(),
        port,
        security,
    };
    if mailbox.oauth {
        return match shared.tokens.current(mailbox.mailbox_id).await {
            Ok(token) => Ok((server, token.login(), Some(token))),
            Err(AccessError::ReconnectRequired { .. }) => Err(Failure::ReconnectRequired),
            Err(AccessError::Db(error)) => Err(Failure::Internal(error.into())),
            Err(error) => Err(Failure::Mailbox(error.to_string())),
        };
    }
    let stored = mailbox
        .imap_password_encrypted
        .as_deref()
        .ok_or_else(|| Failure::Mailbox("no IMAP password is set".to_owned()))?;
    let password = shared
        .cipher
        .decrypt(stored, &imap_password_context(mailbox.mailbox_id))
        .map_err(|e| Failure::Internal(anyhow::anyhow!("cannot decrypt the IMAP password: {e}")))?;
    Ok((
        server,
        Login::password(mailbox.imap_username.clone(), password),
        None,
    ))
}

/// The pause after the `failures`-th failure in a row: doubling from the initial pause up
/// to the maximum, with up to a fifth taken off at random so that mailboxes of one server
/// that failed together do not reconnect together.
fn backoff(settings: &InboxWatcherConfig, failures: u32) -> Duration {
    let doubled = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << failures.saturating_sub(1).min(30));
    let capped = doubled.min(settings.backoff_max_ms);
    let jitter = rand::rng().random_range(0..=capped / 5);
    Duration::from_millis(capped - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_bounded_jitter() -> anyhow::Result<()> {
        let config = domain::config::Config::from_figment(&domain::config::figment(None)?)?;
        let mut settings = config.inbox_watcher;
        settings.backoff_initial_ms = 1000;
        settings.backoff_max_ms = 10_000;
        for (failures, full) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 10_000),
            (40, 10_000),
        ] {
            let pause = backoff(&settings, failures).as_millis();
            assert!(
                pause <= full && pause >= full * 4 / 5,
                "failure {failures}: {pause} ms, expected {} to {full}",
                full * 4 / 5
            );
        }
        Ok(())
    }
}
