//! Per-mailbox SMTP connection pools that send one email at a time and report exactly how far
//! each send got ([`SendOutcome`], [`Stage`]).
//!
//! lettre's `AsyncSmtpTransport::send` hides the stage a send failed at, so each
//! `AsyncSmtpConnection` is driven step by step (`session`): connect, greeting, EHLO,
//! STARTTLS or implicit TLS, EHLO again for the keywords lettre drops (PIPELINING), AUTH,
//! then per email MAIL FROM, RCPT TO and DATA (one write when the server pipelines, each
//! reply still checked at its own stage) and the message with its final dot (one write).
//!
//! **Invariants:**
//! - a send never hands the message over twice: the only retry, on a fresh connection, is
//!   for a reused connection that failed at MAIL FROM without a usable reply (closed by the
//!   server while idle), before any of the message was sent;
//! - the message is sent only after MAIL FROM, every RCPT TO and DATA succeeded; when a
//!   pipelined DATA was answered with 354 after an earlier refusal, the connection is closed
//!   without another byte (not even QUIT, which the server would take as the message);
//! - a connection that saw any failure is closed, never reused; one is renewed after
//!   `messages_per_connection` emails;
//! - at most `connections_per_mailbox` connections per mailbox are open (in use or idle);
//!   further sends wait for one;
//! - texts in outcomes are bounded and never contain the login's password
//!   ([`domain::mail::redact`]); the pool compares logins by a keyed hash, never printed.

mod outcome;
mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::config::WorkerServiceConfig;
use domain::mail::{Login, Server, hello, redact};
use domain::outbound::OutboundGuard;
use lettre::address::Envelope;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use outcome::Failure;
pub use outcome::{SendOutcome, Stage};

/// Timeouts and limits of the pools.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Connect, greeting, EHLO, TLS and AUTH together.
    pub connect_timeout: Duration,
    /// Each of MAIL FROM, RCPT TO (per recipient) and DATA.
    pub command_timeout: Duration,
    /// Sending the message and waiting for the reply after the final dot.
    pub data_timeout: Duration,
    /// A pooled connection unused for longer is closed by [`Pools::close_idle`] (and not
    /// reused by a send).
    pub idle_timeout: Duration,
    /// Connections open at most per mailbox (at least 1).
    pub connections_per_mailbox: usize,
    /// Emails sent over one connection before it is closed (at least 1).
    pub messages_per_connection: u32,
    /// The EHLO name (`sender_worker.hello_name`: a FQDN or an address literal); when `None`,
    /// the host's FQDN, else the address literal of each connection's local address
    /// (`domain::mail::hello`).
    pub hello_name: Option<String>,
    /// Makes every connection: mailbox hosts are tenants' choices (`domain::outbound`).
    pub outbound: OutboundGuard,
}

impl SmtpSettings {
    pub fn from_config(config: &WorkerServiceConfig, outbound: OutboundGuard) -> Self {
        Self {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            command_timeout: Duration::from_millis(config.command_timeout_ms),
            data_timeout: Duration::from_millis(config.data_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            connections_per_mailbox: usize::try_from(config.connections_per_mailbox)
                .unwrap_or(usize::MAX),
            messages_per_connection: config.messages_per_connection,
            hello_name: config.hello_name().map(str::to_owned),
            outbound,
        }
    }
}

/// A mailbox's server and login. A pooled connection is reused only while both are unchanged.
#[derive(Debug, Clone)]
pub struct MailboxServer {
    pub mailbox_id: Uuid,
    pub server: Server,
    pub login: Option<Login>,
}

/// Identifies a server and login without keeping the password: a hash keyed per process.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

struct Pooled {
    connection: session::Connection,
    fingerprint: Fingerprint,
    sent: u32,
    idle_since: Instant,
}

struct Mailbox {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Pooled>>,
}

impl Mailbox {
    fn idle(&self) -> MutexGuard<'_, Vec<Pooled>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    settings: SmtpSettings,
    /// The configured EHLO name; chosen per connection when `None`.
    hello: Option<ClientId>,
    keys: RandomState,
    mailboxes: Mutex<HashMap<Uuid, Arc<Mailbox>>>,
    closing: AtomicBool,
}

/// The SMTP connections of all mailboxes of this worker. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Pools {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Pools {
    pub fn new(mut settings: SmtpSettings) -> Self {
        settings.connections_per_mailbox = settings.connections_per_mailbox.max(1);
        settings.messages_per_connection = settings.messages_per_connection.max(1);
        // The configuration was validated; a name given to the settings directly that is not
        // one is dropped rather than sent.
        let hello = settings.hello_name.as_deref().and_then(|name| {
            hello::parse(name)
                .inspect_err(|reason| tracing::warn!(name, reason, "EHLO name ignored"))
                .ok()
        });
        Self {
            shared: Arc::new(Shared {
                settings,
                hello,
                keys: RandomState::new(),
                mailboxes: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
            }),
        }
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.shared.settings
    }

    /// Sends one email over a pooled connection of this mailbox, opening one if needed. At most
    /// `connections_per_mailbox` sends of one mailbox run at once; others wait their turn.
    pub async fn send(
        &self,
        server: &MailboxServer,
        envelope: &Envelope,
        message: &[u8],
    ) -> SendOutcome {
        let outcome = self.send_inner(server, envelope, message).await;
        metrics::counter!(
            "smtp_send_outcomes_total",
            "outcome" => outcome.kind(),
            "stage" => outcome.stage().map_or("none", Stage::as_str),
        )
        .increment(1);
        outcome
    }

    async fn send_inner(
        &self,
        server: &MailboxServer,
        envelope: &Envelope,
        message: &[u8],
    ) -> SendOutcome {
        let settings = &self.shared.settings;
        let login = server.login.as_ref();
        let mailbox = self.mailbox(server.mailbox_id);
        let Ok(_permit) = mailbox.permits.clone().acquire_owned().await else {
            return SendOutcome::Transient {
                stage: Stage::Connect,
                code: None,
                reply: "the SMTP pools are closed".into(),
            };
        };
        let fingerprint = self.fingerprint(server);
        let (reused, unusable) = take_idle(&mailbox, fingerprint, settings.idle_timeout);
        // Closed before opening another, so the mailbox never exceeds its connections.
        close_each(unusable, settings).await;

        let delivered = match reused {
            Some(mut pooled) => {
                match session::deliver(&mut pooled.connection, settings, envelope, message).await {
                    Ok(reply) => Ok((pooled, reply)),
                    Err(failure) if failure.looks_stale() => {
                        tracing::debug!(
                            mailbox_id = %server.mailbox_id,
                            "pooled SMTP connection was closed by the server; reconnecting"
                        );
                        drop(pooled);
                        metrics::counter!("smtp_stale_connections_total").increment(1);
                        self.send_fresh(server, fingerprint, envelope, message)
                            .await
                    }
                    Err(failure) => {
                        Err(session::close_after(pooled.connection, failure, settings).await)
                    }
                }
            }
            None => {
                self.send_fresh(server, fingerprint, envelope, message)
                    .await
            }
        };

        match delivered {
            Ok((mut pooled, reply)) => {
                pooled.sent = pooled.sent.saturating_add(1);
                pooled.idle_since = Instant::now();
                if pooled.sent >= settings.messages_per_connection
                    || self.shared.closing.load(Ordering::SeqCst)
                {
                    session::quit(pooled.connection, settings).await;
                } else {
                    mailbox.idle().push(pooled);
                }
                SendOutcome::Accepted {
                    reply: redact(&reply_text(&reply), login),
                }
            }
            Err(failure) => failure.into_outcome(login),
        }
    }

    async fn send_fresh(
        &self,
        server: &MailboxServer,
        fingerprint: Fingerprint,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(Pooled, Response), Failure> {
        let settings = &self.shared.settings;
        let mut connection = session::connect(
            settings,
            self.shared.hello.as_ref(),
            &server.server,
            server.login.as_ref(),
        )
        .await?;
        match session::deliver(&mut connection, settings, envelope, message).await {
            Ok(reply) => Ok((
                Pooled {
                    connection,
                    fingerprint,
                    sent: 0,
                    idle_since: Instant::now(),
                },
                reply,
            )),
            Err(failure) => Err(session::close_after(connection, failure, settings).await),
        }
    }

    /// Closes (QUIT) the connections unused for longer than `idle_timeout` and forgets
    /// mailboxes with nothing open. Returns how many connections were closed.
    pub async fn close_idle(&self) -> usize {
        let idle_timeout = self.shared.settings.idle_timeout;
        let mut expired = Vec::new();
        {
            let mut mailboxes = self.mailboxes();
            for mailbox in mailboxes.values() {
                let mut idle = mailbox.idle();
                let (old, kept): (Vec<_>, Vec<_>) = idle
                    .drain(..)
                    .partition(|p| p.idle_since.elapsed() > idle_timeout);
                *idle = kept;
                expired.extend(old);
            }
            let max = self.shared.settings.connections_per_mailbox;
            mailboxes.retain(|_, mailbox| {
                Arc::strong_count(mailbox) > 1
                    || mailbox.permits.available_permits() < max
                    || !mailbox.idle().is_empty()
            });
        }
        let closed = expired.len();
        close_each(expired, &self.shared.settings).await;
        closed
    }

    /// Shutdown: closes (QUIT) every idle connection; connections in use are closed when
    /// their send finishes. Sends after this still work but keep no connection open.
    pub async fn close_all(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let all: Vec<Pooled> = self
            .mailboxes()
            .values()
            .flat_map(|mailbox| mailbox.idle().drain(..).collect::<Vec<_>>())
            .collect();
        close_each(all, &self.shared.settings).await;
    }

    /// Idle connections currently pooled, over all mailboxes.
    pub fn idle_connections(&self) -> usize {
        self.mailboxes().values().map(|m| m.idle().len()).sum()
    }

    fn mailboxes(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Mailbox>>> {
        self.shared
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn mailbox(&self, id: Uuid) -> Arc<Mailbox> {
        let max = self.shared.settings.connections_per_mailbox;
        self.mailboxes()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Mailbox {
                    permits: Arc::new(Semaphore::new(max)),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    fn fingerprint(&self, server: &MailboxServer) -> Fingerprint {
        let login = server
            .login
            .as_ref()
            .map(|l| (l.username.as_str(), l.password.expose_secret()));
        Fingerprint(self.shared.keys.hash_one((
            server.server.host.as_str(),
            server.server.port,
            server.server.security.as_str(),
            login,
        )))
    }
}

/// Takes the most recently used connection that matches `fingerprint` and is not past its
/// idle timeout, and removes the ones that can no longer be used.
fn take_idle(
    mailbox: &Mailbox,
    fingerprint: Fingerprint,
    idle_timeout: Duration,
) -> (Option<Pooled>, Vec<Pooled>) {
    let mut idle = mailbox.idle();
    let (usable, unusable): (Vec<_>, Vec<_>) = idle.drain(..).partition(|p| {
        p.fingerprint == fingerprint
            && p.idle_since.elapsed() <= idle_timeout
            && !p.connection.has_broken()
    });
    *idle = usable;
    let reused = idle.pop();
    (reused, unusable)
}

async fn close_each(connections: Vec<Pooled>, settings: &SmtpSettings) {
    if connections.is_empty() {
        return;
    }
    let mut closing = JoinSet::new();
    for pooled in connections {
        let settings = settings.clone();
        closing.spawn(async move { session::quit(pooled.connection, &settings).await });
    }
    while closing.join_next().await.is_some() {}
}

fn reply_text(response: &Response) -> String {
    let code = u16::from(response.code());
    let lines: Vec<&str> = response.message().collect();
    format!("{code} {}", lines.join(" "))
}
