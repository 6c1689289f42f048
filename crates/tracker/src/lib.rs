//! The public tracking service: open pixel, click redirect and unsubscribe endpoints.
//! This foundation serves health, readiness and metrics; the endpoints come with the
//! tracker issue.

use std::net::TcpListener;

use actix_web::dev::Server;
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{bind, http_server, run_until_cancelled};
use tokio_util::sync::CancellationToken;

pub struct Application {
    base: ServiceBase,
    server: Server,
    port: u16,
}

impl Application {
    /// Binds `tracker.bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.tracker.bind, "tracker.bind")?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let base = ServiceBase::new(config)?;
        let port = listener.local_addr()?.port();
        let server = http_server(&base, listener, |_| {})?;
        Ok(Self { base, server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(port = self.port, "tracker listening");
        run_until_cancelled(self.server, shutdown).await?;
        topics.abort();
        tracing::info!("tracker stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
