//! The public tracking service. Emails carry links to it with a sealed token
//! ([`domain::tracking_token`]: encrypted and authenticated, or signed in emails sent before
//! tokens were encrypted) that names the workspace, enrollment and message, so it serves every
//! request without a database lookup:
//!
//! - `GET /o/{token}` (optionally `.gif`): the open pixel, a 43-byte GIF, never cached;
//! - `GET /c/{token}`: a 302 to the link the token carries (http(s) only); a trap token (a
//!   link hidden from people) answers 204 and records a bot click;
//! - `GET /u/{token}`: a page whose button confirms the unsubscribe (a GET never
//!   unsubscribes: mail software prefetches links); `POST /u/{token}` with
//!   `List-Unsubscribe=One-Click` (RFC 8058) unsubscribes.
//!
//! Invalid tokens, and tokens of another kind than the route's, are 404s with no redirect.
//! Each hit becomes an `email-events` record (opened, clicked, unsubscribed) keyed by the
//! enrollment, enqueued without waiting for Kafka ([`publish`]); the scheduler applies them.
//! Opens and clicks are classified human or bot ([`bots`]); the "click without an open" rule
//! uses this replica's memory of recent opens only, so it is approximate with several
//! replicas. The client address comes from the socket peer, or from `X-Forwarded-For` when
//! the peer is in `tracker.trusted_proxies`, and is kept per `tracker.client_ip`
//! ([`client_ip`]). Health, readiness and metrics are served on the same port.
//!
//! Metrics: `tracker_hits_total{kind, outcome}` (kind open, click, trap, unsubscribe_page,
//! unsubscribe; outcome human, bot, invalid, shown, unsubscribed, bad_request),
//! `tracker_invalid_tokens_total{kind}`, `tracker_events_published_total` and
//! `tracker_events_failed_total` (delivery reports), `tracker_events_backlogged_total`
//! (records that waited for room in the producer's buffer).

pub mod bots;
pub mod client_ip;
pub mod pages;
pub mod publish;
pub mod recent_opens;
pub mod routes;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context as _;
use base64::Engine as _;
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{bind, http_server, run_until_cancelled};
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use crate::bots::BotRules;
use crate::client_ip::IpRecorder;
use crate::publish::{Backlog, Publisher};
use crate::recent_opens::RecentOpens;
use crate::routes::Tracker;

pub struct Application {
    base: ServiceBase,
    server: Server,
    port: u16,
    publisher: Publisher,
    backlog: Backlog,
}

impl Application {
    /// Binds `tracker.bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.tracker.bind, "tracker.bind")?;
        Self::build_with_listener(config, listener)
    }

    /// Needs `security.tracking_keys`. Must run inside a Tokio runtime (the publisher's
    /// backlog task starts here).
    pub fn build_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let signer = config
            .security
            .token_signer()
            .map_err(|e| anyhow::anyhow!("`security.tracking_keys`: {e}"))?
            .context("the tracker needs `security.tracking_keys`")?;
        let base = ServiceBase::new(config)?;
        let config = &base.config;
        let (publisher, backlog) = Publisher::new(&config.kafka, base.topics.email_events.clone())?;
        let tracker = web::Data::new(Tracker {
            signer,
            rules: BotRules::from_config(&config.tracker),
            recent_opens: RecentOpens::new(config.tracker.recent_opens_capacity),
            publisher: publisher.clone(),
            ip_recorder: IpRecorder::new(config.tracker.client_ip, first_tracking_key(config)?),
            trusted_proxies: config.tracker.trusted_proxy_nets(),
        });
        let port = listener.local_addr()?.port();
        let server = http_server(&base, listener, move |service| {
            routes::configure(service, tracker.clone());
        })?;
        Ok(Self {
            base,
            server,
            port,
            publisher,
            backlog,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`, then lets in-flight requests finish and flushes their events,
    /// within `shutdown.grace_period_seconds`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(port = self.port, "tracker listening");
        let served = run_until_cancelled(self.server, shutdown).await;
        topics.abort();
        let grace = Duration::from_secs(self.base.config.shutdown.grace_period_seconds);
        self.publisher.close(self.backlog, grace).await;
        served?;
        tracing::info!("tracker stopped");
        Ok(())
    }
}

/// The key that hashes client addresses under `tracker.client_ip = "hash"`.
fn first_tracking_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    let spec = config.security.tracking_keys.expose_secret();
    let first = spec.split(',').next().unwrap_or_default().trim();
    base64::engine::general_purpose::STANDARD
        .decode(first)
        .context("`security.tracking_keys`: first entry is not valid base64")
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
