//! Decides what is due and dispatches send jobs. This foundation runs the admin server
//! (health, readiness, metrics) and creates the topics; dispatch comes with the scheduler issue.

pub mod timing;
pub mod window;

use std::net::TcpListener;

use actix_web::dev::Server;
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio_util::sync::CancellationToken;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
}

impl Application {
    /// Binds `scheduler.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.scheduler.admin_bind, "scheduler.admin_bind")?;
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
        tracing::info!(admin_port = self.admin_port, "scheduler running");
        run_until_cancelled(self.admin, shutdown).await?;
        topics.abort();
        tracing::info!("scheduler stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
