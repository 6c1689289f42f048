//! The inbox watcher (binary `inbox-watcher`, its own Deployment): reads every connected mailbox's IMAP inbox for what comes back to the emails
//! we sent, and tells the scheduler through `email-events`:
//!
//! - a reply (matched by In-Reply-To/References, else by sender and thread subject):
//!   `replied`, which stops the enrollment when its sequence says `stop_on_reply`;
//! - an automatic answer (out of office; RFC 3834 `Auto-Submitted`, `X-Autoreply`,
//!   `Precedence`, common subjects): `auto_replied`, and the sequence goes on unless it says
//!   `stop_on_auto_reply`;
//! - a delivery status notification (RFC 3464) or another non-delivery report: `bounced`,
//!   hard for 5.x.x (the address is suppressed), soft for 4.x.x;
//! - a spam complaint from a feedback loop (an RFC 5965 report): `complained`, which
//!   suppresses the address.
//!
//! Each mailbox is read by exactly one replica at a time, through a lease in PostgreSQL
//! ([`supervisor`]); replicas scale out and take over from each other. The folders read are
//! INBOX and the server's Junk folder, or those configured ([`folders`]). Reading is
//! incremental by UIDVALIDITY and UID per folder, with the folder's position stored in the
//! same transaction as the events' outbox rows ([`watch`]), so a restart neither misses nor
//! repeats an email; event ids are derived from the email itself ([`matching`]), so an email
//! read again (a renumbered folder, or the same report in INBOX and Junk) yields no second
//! event. IMAP IDLE where the server offers it, polling otherwise ([`reader`]). Folders are
//! opened with EXAMINE and emails fetched with BODY.PEEK: the owner's unread mail stays
//! unread.
//!
//! Metrics: `inbox_watcher_mailboxes` (watched by this replica), `inbox_watcher_failures_total
//! {kind}` (mailbox: connection, login or server; internal), `inbox_watcher_emails_total
//! {kind}` (personal, auto_reply, bounce), `inbox_watcher_events_total`,
//! `inbox_watcher_uidvalidity_changes_total`, `inbox_watcher_lease_round_failures_total`.

pub mod classify;
pub mod folders;
pub mod matching;
pub mod reader;
pub mod supervisor;
pub mod watch;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use anyhow::Context as _;
use domain::config::Config;
use domain::kafka::Producer;
use domain::outbox::OutboxRelay;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio_util::sync::CancellationToken;

use watch::Shared;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
    producer: Producer,
    shared: Arc<Shared>,
}

impl Application {
    /// Binds `inbox_watcher.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.inbox_watcher.admin_bind, "inbox_watcher.admin_bind")?;
        Self::build_with(config, listener)
    }

    pub fn build_with(config: Config, admin_listener: TcpListener) -> anyhow::Result<Self> {
        let cipher = config.security.cipher().context(
            "security.encryption_keys must be set to decrypt mailbox IMAP passwords \
             (SEQ_SECURITY__ENCRYPTION_KEYS)",
        )?;
        let producer = Producer::new(&config.kafka)?;
        let base = ServiceBase::new(config)?;
        let admin_port = admin_listener.local_addr()?.port();
        let admin = admin_server(&base, admin_listener)?;
        let clock: Arc<dyn domain::clock::Clock> = Arc::new(domain::clock::SystemClock);
        let tokens = domain::oauth::AccessTokens::new(
            base.pool.clone(),
            Arc::new(cipher.clone()),
            domain::oauth::TokenClient::new(
                base.config.security.outbound_guard(),
                Arc::clone(&clock),
                domain::oauth::access::TOKEN_TIMEOUT,
            )
            .map_err(|e| anyhow::anyhow!("OAuth token client: {e}"))?,
            base.config.oauth.clone(),
            clock,
            base.topics.mailbox_events.clone(),
        );
        let shared = Arc::new(Shared {
            pool: base.pool.clone(),
            cipher,
            tokens,
            outbound: base.config.security.outbound_guard(),
            settings: base.config.inbox_watcher.clone(),
            owner: domain::service::instance_id("inbox-watcher"),
            events_topic: base.topics.email_events.clone(),
            mailbox_events_topic: base.topics.mailbox_events.clone(),
        });
        Ok(Self {
            base,
            admin,
            admin_port,
            producer,
            shared,
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// This replica's name on the leases it holds.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(admin_port = self.admin_port, owner = %self.shared.owner,
                       "inbox-watcher running");
        // The relay outlives the watches by a little, so events recorded last get out.
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(
            OutboxRelay::from_config(
                self.base.pool.clone(),
                self.producer.clone(),
                &self.base.config.outbox,
            )
            .run(relay_stop.clone()),
        );
        let watching = tokio::spawn(supervisor::run(Arc::clone(&self.shared), shutdown.clone()));
        let served = run_until_cancelled(self.admin, shutdown).await;
        let watched = watching.await;
        relay_stop.cancel();
        let _ = relay.await;
        topics.abort();
        served?;
        watched?;
        tracing::info!("inbox-watcher stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
