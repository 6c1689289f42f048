//! `GET /api/v1/health`: the seed's health check, kept for clients that use it. Same meaning
//! as `/readyz`: 200 when the API can serve, 503 with the failing dependency otherwise.

use actix_web::HttpResponse;
use domain::service::readiness::Readiness;
use paperclip::actix::{api_v2_operation, web};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)));
}

/// Health check
///
/// 200 `{"status": "ready", ...}` when PostgreSQL (migrated) and Kafka are reachable; 503 with
/// the reason of each failing check otherwise. No authentication.
#[api_v2_operation(tags(Health))]
async fn health(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.check().await;
    if report.is_ready() {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}
