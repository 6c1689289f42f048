//! Renders and sends emails over SMTP, scaled horizontally: consumes `email-jobs`, claims
//! each message before talking to SMTP (so a job delivered twice sends one email), sends
//! over per-mailbox connection pools, and records the outcome with the events that tell the
//! scheduler (a `sent` published once recorded, the others through the outbox). See
//! [`worker`] for the pipeline.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use anyhow::Context as _;
use domain::clock::{Clock, SystemClock};
use domain::config::Config;
use domain::kafka::Producer;
use domain::outbox::OutboxRelay;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio_util::sync::CancellationToken;

pub mod announce;
pub mod batch;
pub mod compose;
pub mod deliver;
pub mod dkim;
pub mod offsets;
pub mod outcome;
pub mod prepare;
pub mod recheck;
pub mod record;
pub mod smtp;
pub mod worker;

use deliver::Delivery;
use recheck::Rechecker;
use worker::Worker;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
    worker: Arc<Worker>,
    rechecker: Rechecker,
    producer: Producer,
    clock: Arc<dyn Clock>,
}

impl Application {
    /// Binds `sender_worker.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.sender_worker.admin_bind, "sender_worker.admin_bind")?;
        Self::build_with(config, listener, Arc::new(SystemClock))
    }

    pub fn build_with(
        config: Config,
        admin_listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let signer = config
            .security
            .token_signer()
            .map_err(|e| anyhow::anyhow!("security.tracking_keys: {e}"))?
            .context(
                "security.tracking_keys must be set: every email carries signed unsubscribe \
                 links (SEQ_SECURITY__TRACKING_KEYS)",
            )?;
        let cipher = config.security.cipher().context(
            "security.encryption_keys must be set to decrypt mailbox passwords \
             (SEQ_SECURITY__ENCRYPTION_KEYS)",
        )?;
        let dkim = dkim::DkimSigners::from_config(&config.sender_worker.dkim)?;
        let producer = Producer::new(&config.kafka)?;
        let base = ServiceBase::new(config)?;
        let admin_port = admin_listener.local_addr()?.port();
        let admin = admin_server(&base, admin_listener)?;
        let settings = base.config.sender_worker.clone();
        let cipher = Arc::new(cipher);
        let tokens = domain::oauth::AccessTokens::new(
            base.pool.clone(),
            Arc::clone(&cipher),
            domain::oauth::TokenClient::new(
                base.config.security.outbound_guard(),
                Arc::clone(&clock),
                domain::oauth::access::TOKEN_TIMEOUT,
            )
            .map_err(|e| anyhow::anyhow!("OAuth token client: {e}"))?,
            base.config.oauth.clone(),
            Arc::clone(&clock),
            base.topics.mailbox_events.clone(),
        );
        let rechecker = Rechecker::new(
            base.pool.clone(),
            Arc::clone(&clock),
            base.config.security.outbound_guard(),
            Arc::clone(&cipher),
            tokens.clone(),
            base.topics.mailbox_events.clone(),
            &settings,
        );
        let worker = Arc::new(Worker {
            pool: base.pool.clone(),
            kafka: base.config.kafka.clone(),
            topics: base.topics.clone(),
            producer: producer.clone(),
            worker_id: domain::service::instance_id("sender-worker"),
            delivery: Arc::new(Delivery {
                signer,
                dkim,
                pools: smtp::Pools::new(smtp::SmtpSettings::from_config(
                    &settings,
                    base.config.security.outbound_guard(),
                )),
                tokens: tokens.clone(),
            }),
            cipher,
            tracker_url: base.config.tracker.public_url.clone(),
            clock: Arc::clone(&clock),
            settings,
        });
        Ok(Self {
            base,
            admin,
            admin_port,
            worker,
            rechecker,
            producer,
            clock,
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The automatic re-checks of mailboxes in `error`, for tests that run a round by hand.
    pub fn rechecker(&self) -> &Rechecker {
        &self.rechecker
    }

    /// This process's worker id, as stored on the messages it claims.
    pub fn worker_id(&self) -> &str {
        &self.worker.worker_id
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(admin_port = self.admin_port, worker.id = %self.worker.worker_id,
                       "sender-worker running");
        let settings = &self.base.config.sender_worker;
        if settings.hello_name().is_none() {
            // Looked up now rather than within the first connection's timeout (the resolver
            // may ask DNS); the result is kept for the process.
            tokio::spawn(domain::mail::hello::host_fqdn());
        }
        // The relay outlives the consumer by a little, so outcomes recorded last get out.
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(
            OutboxRelay::from_config(
                self.base.pool.clone(),
                self.producer.clone(),
                &self.base.config.outbox,
            )
            .run(relay_stop.clone()),
        );
        let reaper = tokio::spawn(worker::run_reaper(
            self.base.pool.clone(),
            Arc::clone(&self.clock),
            Duration::from_millis(settings.reaper_interval_ms),
            shutdown.clone(),
        ));
        let rechecks = tokio::spawn(self.rechecker.clone().run(
            Duration::from_millis(settings.reaper_interval_ms),
            shutdown.clone(),
        ));
        let pools = self.worker.delivery.pools.clone();
        let idle = Duration::from_millis(settings.idle_timeout_ms);
        let idle_stop = shutdown.clone();
        let idle_closer = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = idle_stop.cancelled() => return,
                    () = tokio::time::sleep(idle / 2) => {
                        pools.close_idle().await;
                    }
                }
            }
        });
        let consuming = tokio::spawn(Arc::clone(&self.worker).run(shutdown.clone()));

        let served = run_until_cancelled(self.admin, shutdown).await;
        let consumed = consuming.await;
        self.worker.delivery.pools.close_all().await;
        relay_stop.cancel();
        let _ = relay.await;
        let _ = reaper.await;
        let _ = rechecks.await;
        let _ = idle_closer.await;
        topics.abort();
        served?;
        consumed??;
        tracing::info!("sender-worker stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
