//! The IMAP side of watching one mailbox: log in, list its folders, open one read-only at a
//! time, find the UIDs to read, fetch them without marking them read, and wait for more
//! (IDLE on the open folder, or a pause then NOOP).
//! Every command runs under the configured timeout; errors are plain text, redacted by the
//! caller before they are stored.

use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use chrono::{DateTime, NaiveDate, Utc};
use domain::config::InboxWatcherConfig;
use domain::mail::imap::{self, ConnectError, Session};
use domain::mail::{Login, Server};
use domain::outbound::OutboundGuard;
use futures::TryStreamExt as _;
use tokio_util::sync::CancellationToken;

use super::folders::Listed;

/// The selected folder's identity: UIDs are comparable only under one UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uid_validity: u32,
    /// The UID the next message will get, when the server says (RFC 3501 requires it).
    pub uid_next: Option<u32>,
}

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub uid: u32,
    /// When the server received it (INTERNALDATE).
    pub received_at: Option<DateTime<Utc>>,
    /// The first `max_message_bytes` of the message.
    pub raw: Vec<u8>,
}

/// Why waiting for new mail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Something may have arrived (or the wait timed out: look anyway).
    Look,
    /// The watch was cancelled (shutdown, or the lease moved to another replica).
    Cancelled,
}

pub struct Reader {
    /// Taken out while IDLE runs (it consumes the session); `None` after IDLE failed.
    session: Option<Session>,
    settings: InboxWatcherConfig,
    idle: bool,
    special_use: bool,
    /// The folder EXAMINE opened last, and what it said.
    examined: Option<(String, Selected)>,
}

impl Reader {
    /// Connects through `guard` and logs in; also finds out whether the server offers IDLE
    /// and SPECIAL-USE. `ConnectError::Refused` when the guard refused the host (nothing was
    /// connected).
    pub async fn open(
        guard: &OutboundGuard,
        server: &Server,
        login: &Login,
        settings: &InboxWatcherConfig,
    ) -> Result<Self, ConnectError> {
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let connecting = imap::connect(guard, server, login, connect_timeout);
        let mut session = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| {
                format!(
                    "IMAP server {}:{} did not greet and accept the login within {} ms",
                    server.host, server.port, settings.connect_timeout_ms
                )
            })??;
        let command = Duration::from_millis(settings.command_timeout_ms);
        let capabilities = within(command, "CAPABILITY", session.capabilities()).await?;
        Ok(Self {
            session: Some(session),
            settings: settings.clone(),
            idle: settings.use_idle && capabilities.has_str("IDLE"),
            special_use: capabilities.has_str("SPECIAL-USE"),
            examined: None,
        })
    }

    /// Whether the server announced SPECIAL-USE (RFC 6154).
    pub fn special_use(&self) -> bool {
        self.special_use
    }

    /// Every folder of the account, with its special use where the server tells it: with
    /// SPECIAL-USE, `LIST "" "*" RETURN (SPECIAL-USE)` (a plain LIST if the server rejects
    /// the return option); otherwise a plain LIST, whose answer some servers mark anyway.
    pub async fn list(&mut self) -> Result<Vec<Listed>, String> {
        if self.special_use {
            match self.run_list("\"*\" RETURN (SPECIAL-USE)").await {
                Ok(listed) => return Ok(listed),
                Err(error) => {
                    tracing::debug!(%error, "LIST RETURN (SPECIAL-USE) failed; plain LIST");
                }
            }
        }
        self.run_list("\"*\"").await
    }

    async fn run_list(&mut self, pattern: &str) -> Result<Vec<Listed>, String> {
        let timeout = self.command_timeout();
        let session = self.session()?;
        let listing = async {
            let stream = session
                .list(Some(""), Some(pattern))
                .await
                .map_err(|e| format!("LIST failed: {e}"))?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| format!("LIST failed: {e}"))
        };
        let names = tokio::time::timeout(timeout, listing)
            .await
            .map_err(|_| format!("LIST got no answer within {} ms", timeout.as_millis()))??;
        self.drain_unsolicited();
        Ok(names
            .iter()
            .map(|n| Listed::new(n.name(), n.delimiter(), n.attributes()))
            .collect())
    }

    /// Opens `folder` read-only with EXAMINE, unless it is the one open already: the watcher
    /// can never change the owner's mail (no \Seen, no \Recent taken from their own client).
    pub async fn examine(&mut self, folder: &str) -> Result<Selected, String> {
        if let Some((open, selected)) = &self.examined
            && open == folder
        {
            return Ok(*selected);
        }
        self.examined = None;
        let timeout = self.command_timeout();
        let opened = within(timeout, "EXAMINE", self.session()?.examine(folder))
            .await
            .map_err(|e| format!("{e} (folder {folder})"))?;
        self.drain_unsolicited();
        let uid_validity = opened.uid_validity.ok_or_else(|| {
            format!("the server gave no UIDVALIDITY for {folder}, so read positions cannot be kept")
        })?;
        let selected = Selected {
            uid_validity,
            uid_next: opened.uid_next,
        };
        self.examined = Some((folder.to_owned(), selected));
        Ok(selected)
    }

    pub fn uses_idle(&self) -> bool {
        self.idle
    }

    fn session(&mut self) -> Result<&mut Session, String> {
        self.session
            .as_mut()
            .ok_or_else(|| "the IMAP session was lost in IDLE".to_owned())
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.command_timeout_ms)
    }

    /// UIDs above `last_uid`, ascending. (`n:*` always matches the newest message, even when
    /// its UID is below n, hence the filter.)
    pub async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, String> {
        let from = last_uid.saturating_add(1);
        let query = format!("UID {from}:*");
        let timeout = self.command_timeout();
        let found = within(timeout, "UID SEARCH", self.session()?.uid_search(&query)).await?;
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// UIDs of messages received on or after `day`, ascending.
    pub async fn uids_since(&mut self, day: NaiveDate) -> Result<Vec<u32>, String> {
        let query = format!("SINCE {}", day.format("%-d-%b-%Y"));
        let timeout = self.command_timeout();
        let found = within(timeout, "UID SEARCH", self.session()?.uid_search(&query)).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The highest UID in the folder, 0 when it is empty (for servers that omit UIDNEXT).
    pub async fn highest_uid(&mut self) -> Result<u32, String> {
        let timeout = self.command_timeout();
        let found = within(timeout, "UID SEARCH", self.session()?.uid_search("ALL")).await?;
        Ok(found.into_iter().max().unwrap_or(0))
    }

    /// Fetches `uids` (ascending) with BODY.PEEK, so the owner's unread mail stays unread.
    /// A message over `max_message_bytes` is fetched as its header only: enough to match a
    /// reply, and a report that large is not a bounce report. (A partial fetch, `BODY[]<0.n>`,
    /// would keep the first bytes instead, but async-imap's parser rejects its answer.)
    /// A message expunged meanwhile is simply missing from the result.
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, String> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let sizes = self.run_fetch(uids, "(UID RFC822.SIZE)").await?;
        let max = self.settings.max_message_bytes;
        let (mut whole, mut header_only) = (Vec::new(), Vec::new());
        for (uid, fetch) in &sizes {
            if fetch.size.is_some_and(|size| size > max) {
                header_only.push(*uid);
            } else {
                whole.push(*uid);
            }
        }
        let mut fetched = Vec::with_capacity(uids.len());
        for (part, query) in [
            (&whole, "(UID INTERNALDATE BODY.PEEK[])"),
            (&header_only, "(UID INTERNALDATE BODY.PEEK[HEADER])"),
        ] {
            if part.is_empty() {
                continue;
            }
            for (uid, fetch) in self.run_fetch(part, query).await? {
                let raw = fetch.body().or_else(|| fetch.header()).unwrap_or_default();
                fetched.push(Fetched {
                    uid,
                    received_at: fetch.internal_date().map(|d| d.with_timezone(&Utc)),
                    raw: raw.to_vec(),
                });
            }
        }
        fetched.sort_by_key(|f| f.uid);
        Ok(fetched)
    }

    /// One UID FETCH of `uids` (ascending): the answers for those UIDs, each once.
    async fn run_fetch(
        &mut self,
        uids: &[u32],
        query: &str,
    ) -> Result<Vec<(u32, async_imap::types::Fetch)>, String> {
        let set = uid_set(uids);
        let timeout = self.command_timeout();
        let session = self.session()?;
        let fetching = async {
            let stream = session
                .uid_fetch(&set, query)
                .await
                .map_err(|e| format!("UID FETCH failed: {e}"))?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| format!("UID FETCH failed: {e}"))
        };
        let responses = tokio::time::timeout(timeout, fetching)
            .await
            .map_err(|_| format!("UID FETCH got no answer within {} ms", timeout.as_millis()))??;
        self.drain_unsolicited();
        let mut answers: Vec<(u32, async_imap::types::Fetch)> = responses
            .into_iter()
            .filter_map(|f| f.uid.map(|uid| (uid, f)))
            .filter(|(uid, _)| uids.binary_search(uid).is_ok())
            .collect();
        answers.sort_by_key(|(uid, _)| *uid);
        answers.dedup_by_key(|(uid, _)| *uid);
        Ok(answers)
    }

    /// Waits until the server reports a change in the open folder (IDLE, for at most
    /// `idle_for`) or the poll interval passed (then a NOOP lets the server tell about new
    /// messages), or until `cancel`.
    pub async fn wait(
        &mut self,
        cancel: &CancellationToken,
        idle_for: Duration,
    ) -> Result<Woken, String> {
        if self.idle {
            return self.wait_idle(cancel, idle_for).await;
        }
        let pause = Duration::from_millis(self.settings.poll_interval_ms);
        tokio::select! {
            () = cancel.cancelled() => return Ok(Woken::Cancelled),
            () = tokio::time::sleep(pause) => {}
        }
        let timeout = self.command_timeout();
        within(timeout, "NOOP", self.session()?.noop()).await?;
        self.drain_unsolicited();
        Ok(Woken::Look)
    }

    async fn wait_idle(
        &mut self,
        cancel: &CancellationToken,
        idle_for: Duration,
    ) -> Result<Woken, String> {
        let command = self.command_timeout();
        let session = self
            .session
            .take()
            .ok_or_else(|| "the IMAP session was lost in IDLE".to_owned())?;
        let mut handle = session.idle();
        within(command, "IDLE", handle.init()).await?;
        let woken = {
            let (waiting, interrupt) = handle.wait_with_timeout(idle_for);
            tokio::pin!(waiting);
            tokio::select! {
                response = &mut waiting => match response {
                    Ok(IdleResponse::NewData(_) | IdleResponse::Timeout) => Woken::Look,
                    Ok(IdleResponse::ManualInterrupt) => Woken::Cancelled,
                    Err(e) => return Err(format!("IDLE failed: {e}")),
                },
                () = cancel.cancelled() => {
                    drop(interrupt);
                    let _ = waiting.await;
                    Woken::Cancelled
                }
            }
        };
        self.session = Some(within(command, "DONE", handle.done()).await?);
        self.drain_unsolicited();
        Ok(woken)
    }

    /// EXISTS/EXPUNGE notices are not needed (every look searches by UID); reading them keeps
    /// the session's queue from filling.
    fn drain_unsolicited(&mut self) {
        if let Some(session) = &mut self.session {
            while session.unsolicited_responses.try_recv().is_ok() {}
        }
    }

    /// Logs out, best effort: the connection is dropped either way.
    pub async fn close(mut self) {
        let timeout = self.command_timeout();
        if let Some(session) = &mut self.session {
            let _ = tokio::time::timeout(timeout, session.logout()).await;
        }
    }
}

async fn within<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    command: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, command).await {
        Err(_) => Err(format!(
            "{what} got no answer within {} ms",
            timeout.as_millis()
        )),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Ok(Ok(value)) => Ok(value),
    }
}

/// A UID set with runs collapsed (`3:7,9,12:13`), so a long catch-up stays one short command.
pub fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &uid in uids {
        run = match run {
            Some((start, end)) if end.checked_add(1) == Some(uid) => Some((start, uid)),
            Some(done) => {
                parts.push(range(done));
                Some((uid, uid))
            }
            None => Some((uid, uid)),
        };
    }
    if let Some(done) = run {
        parts.push(range(done));
    }
    parts.join(",")
}

fn range((start, end): (u32, u32)) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}:{end}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[3, 4, 5, 6, 7, 9, 12, 13]), "3:7,9,12:13");
        assert_eq!(uid_set(&[1, 3, 5]), "1,3,5");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
}
