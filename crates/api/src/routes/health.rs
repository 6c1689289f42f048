//! `GET /api/v1/health`: the seed's health check, kept for clients that use it. Same meaning
//! as `/readyz`: 200 when the API can serve, 503 with the failing dependency otherwise.

use actix_web::{HttpResponse, web};
use domain::service::readiness::Readiness;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health));
}

async fn health(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.check().await;
    if report.is_ready() {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}
