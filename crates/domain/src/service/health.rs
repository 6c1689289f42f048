//! `/healthz` (the process is alive), `/readyz` (its dependencies are usable) and `/metrics`,
//! mounted on the public port of api and tracker and on the admin port of the workers; and
//! the client side of `/readyz`, the `health` command of every binary.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;

use super::metrics::Metrics;
use super::readiness::Readiness;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.check().await;
    if report.is_ready() {
        HttpResponse::Ok().json(report)
    } else {
        tracing::warn!(checks = ?report.checks, "not ready");
        HttpResponse::ServiceUnavailable().json(report)
    }
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

/// The `health` command: whether the service listening on `bind` (this container's, so an
/// unspecified address means loopback) answers `/readyz` with 200, within 5 seconds.
pub async fn check(bind: SocketAddr) -> anyhow::Result<()> {
    let url = readyz_url(bind);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if status.is_success() {
        println!("ready: {url} answered {status}");
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("not ready: {url} answered {status}: {body}")
}

fn readyz_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, bind.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_is_probed_on_loopback() -> anyhow::Result<()> {
        let url = |s: &str| s.parse().map(readyz_url);
        assert_eq!(url("0.0.0.0:8080")?, "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:9101")?, "http://[::1]:9101/readyz");
        assert_eq!(url("10.0.0.7:9102")?, "http://10.0.0.7:9102/readyz");
        Ok(())
    }

    /// A real HTTP server answering /readyz with `status`; its address.
    async fn serve_readyz(status: u16) -> anyhow::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().route(
                "/readyz",
                web::get().to(move || async move {
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).unwrap_or_default(),
                    )
                    .body("{\"checks\":[]}")
                }),
            )
        })
        .workers(1)
        .listen(listener)?
        .run();
        actix_web::rt::spawn(server);
        Ok(addr)
    }

    #[actix_web::test]
    async fn health_passes_only_when_readyz_answers_200() -> anyhow::Result<()> {
        let ready = serve_readyz(200).await?;
        check(ready).await?;
        let unready = serve_readyz(503).await?;
        let error = check(unready).await.err().map(|e| format!("{e:#}"));
        assert!(
            error.as_deref().is_some_and(|e| e.contains("503")),
            "{error:?}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        assert!(check(closed).await.is_err());
        Ok(())
    }
}
