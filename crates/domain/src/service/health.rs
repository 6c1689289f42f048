//! `/healthz` (the process is alive), `/readyz` (its dependencies are usable) and `/metrics`,
//! mounted on the public port of api and tracker and on the admin port of the workers.

use actix_web::{HttpResponse, web};

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
