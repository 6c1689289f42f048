//! Running actix servers under the service's shutdown token, and the admin server that gives
//! scheduler and sender-worker their health, readiness and metrics endpoints.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use super::ServiceBase;

/// Runs `server` until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn run_until_cancelled(
    server: Server,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    let result = server.await;
    stopper.abort();
    result
}

/// An HTTP server with the health routes plus whatever `configure` mounts. Request lines are
/// logged except for probes (tracker paths carry tokens; keep them at debug there).
pub fn http_server<F>(
    base: &ServiceBase,
    listener: TcpListener,
    configure: F,
) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let readiness = web::Data::new(base.readiness.clone());
    let metrics = web::Data::new(base.metrics.clone());
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .configure(super::health::routes)
            .configure(configure.clone())
    })
    .disable_signals()
    .shutdown_timeout(base.config.shutdown.grace_period_seconds)
    .listen(listener)?
    .run())
}

/// The admin server of the workers: `/healthz`, `/readyz`, `/metrics` only.
pub fn admin_server(base: &ServiceBase, listener: TcpListener) -> std::io::Result<Server> {
    http_server(base, listener, |_| {})
}

/// Binds `addr`, naming the setting in the error so a taken port is easy to trace.
pub fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot bind {addr} (setting `{key}`): {e}"))
}
