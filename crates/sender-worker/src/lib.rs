//! Renders and sends emails over SMTP, scaled horizontally. This foundation runs the admin
//! server (health, readiness, metrics); consuming `email-jobs` comes with the sender-worker issue.

use std::net::TcpListener;

use actix_web::dev::Server;
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio_util::sync::CancellationToken;

pub mod compose;
pub mod dkim;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
}

impl Application {
    /// Binds `sender_worker.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.sender_worker.admin_bind, "sender_worker.admin_bind")?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(
        config: Config,
        admin_listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let base = ServiceBase::new(config)?;
        let admin_port = admin_listener.local_addr()?.port();
        let admin = admin_server(&base, admin_listener)?;
        Ok(Self {
            base,
            admin,
            admin_port,
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(admin_port = self.admin_port, "sender-worker running");
        run_until_cancelled(self.admin, shutdown).await?;
        topics.abort();
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
