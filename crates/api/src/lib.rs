//! The campaign-authoring REST API. Writes PostgreSQL only; never sends email. It talks to
//! SMTP and IMAP servers only when a client asks it to verify a mailbox's settings.

pub mod auth;
pub mod csv_reader;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod pagination;
pub mod respond;
mod routes;
pub mod server;
pub mod state;
pub mod uniform_errors;
pub mod validation;

use std::net::TcpListener;

use actix_web::dev::{Server, Service as _, ServiceResponse};
use actix_web::{ResponseError as _, web};
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{bind, run_until_cancelled};
use futures::FutureExt as _;
use paperclip::actix::OpenApiExt;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::state::{AppState, OAuth};

pub struct Application {
    base: ServiceBase,
    server: Server,
    port: u16,
}

impl Application {
    /// Binds `api.bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.api.bind, "api.bind")?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let base = ServiceBase::new(config)?;
        let port = listener.local_addr()?.port();
        let cipher = match base.config.security.cipher() {
            Ok(cipher) => Some(cipher),
            Err(domain::crypto::CryptoError::NotConfigured) => {
                tracing::warn!("security.encryption_keys is empty: mailboxes cannot be stored");
                None
            }
            Err(error) => return Err(error.into()),
        };
        let outbound = base.config.security.outbound_guard();
        let oauth = OAuth::new(
            base.config.oauth.clone(),
            base.pool.clone(),
            cipher.as_ref(),
            outbound.clone(),
            base.topics.mailbox_events.clone(),
        )?;
        let state = web::Data::new(AppState::new(
            base.pool.clone(),
            base.config.api.clone(),
            cipher,
            outbound,
            base.topics.clone(),
            oauth,
        ));
        let readiness = web::Data::new(base.readiness.clone());
        let metrics = web::Data::new(base.metrics.clone());
        let body_limit = web::Data::new(BodyLimit(base.config.api.max_body_bytes));
        let document = web::Data::new(openapi::Served::generate()?);
        let max_uri_bytes = base.config.api.max_uri_bytes;
        let settings = server::Settings {
            max_uri_bytes,
            shutdown_timeout_secs: base.config.shutdown.grace_period_seconds,
        };
        let factory = move || {
            actix_web::App::new()
                .app_data(readiness.clone())
                .app_data(metrics.clone())
                .app_data(document.clone())
                .configure(openapi::routes)
                .configure(domain::service::health::routes)
                .wrap_api_with_spec(openapi::base_spec())
                .app_data(state.clone())
                .app_data(body_limit.clone())
                .app_data(path_config())
                // Tells Swagger UI where the document is. paperclip's own (Swagger 2.0) route
                // at that path is never reached: `openapi::routes` came first.
                .with_json_spec_at(openapi::SPEC_PATH)
                .with_swagger_ui_at(openapi::SWAGGER_PATHS[0])
                .with_swagger_ui_at(openapi::SWAGGER_PATHS[1])
                .configure(routes::configure)
                .build()
                .default_service(web::to(|| async {
                    ApiError::NotFound("route").error_response()
                }))
                .wrap(uniform_errors::envelopes())
                .wrap_fn(move |req, srv| {
                    let early = uniform_errors::uri_too_long(&req, max_uri_bytes).or_else(|| {
                        openapi::is_unknown_swagger_file(req.path())
                            .then(|| ApiError::NotFound("file").error_response())
                    });
                    if let Some(response) = early {
                        let response = req.into_response(response);
                        return async move { Ok(response) }.boxed_local();
                    }
                    let call = srv.call(req);
                    async move { call.await.map(ServiceResponse::map_into_boxed_body) }
                        .boxed_local()
                })
        };
        let server = server::serve(listener, factory, settings)?;
        Ok(Self { base, server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        tracing::info!(port = self.port, "api listening");
        run_until_cancelled(self.server, shutdown).await?;
        topics.abort();
        tracing::info!("api stopped");
        Ok(())
    }
}

/// A malformed id in a path is simply an id that does not exist.
fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into())
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
