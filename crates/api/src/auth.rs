//! Authentication: `Authorization: Bearer <API key>` resolves to the key's workspace, which
//! scopes every query; the admin token guards workspace creation. Both compare hashes, so no
//! timing difference reveals how much of a token matched.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use governor::clock::{Clock, DefaultClock};
use paperclip::actix::Apiv2Security;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The caller's workspace, from a valid API key.
#[derive(Debug, Clone, Copy, Apiv2Security)]
#[openapi(
    apiKey,
    in = "header",
    name = "Authorization",
    description = "`Bearer <API key>`; keys are created with the workspace and under /api/v1/api-keys"
)]
pub struct Caller {
    pub workspace_id: Uuid,
    pub key_id: Uuid,
}

/// A request carrying the configured admin token.
#[derive(Debug, Clone, Copy, Apiv2Security)]
#[openapi(
    apiKey,
    alias = "admin_token",
    in = "header",
    name = "Authorization",
    description = "`Bearer <api.admin_token>`"
)]
pub struct Admin;

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AppState not registered")))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or(ApiError::Unauthorized(
                "missing `Authorization: Bearer <API key>`",
            ))?;
            let hash = domain::api_keys::hash(&token);
            let mut conn = state.pool.get().await?;
            let key = domain::db::api_keys::find_active_by_hash(&mut conn, &hash)
                .await?
                .ok_or(ApiError::Unauthorized("invalid or revoked API key"))?;
            if let Err(not_until) = state.limiter.check_key(&key.id) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs().max(1),
                });
            }
            domain::db::api_keys::touch(&mut conn, key.id).await?;
            Ok(Caller {
                workspace_id: key.workspace_id,
                key_id: key.id,
            })
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = state(req).and_then(|state| {
            let configured = state.config.admin_token.expose_secret();
            if configured.is_empty() {
                return Err(ApiError::Unauthorized(
                    "workspace creation is disabled (api.admin_token is not set)",
                ));
            }
            let given = bearer(req).ok_or(ApiError::Unauthorized("missing admin token"))?;
            let matches: bool = domain::api_keys::hash(&given)
                .ct_eq(&domain::api_keys::hash(configured))
                .into();
            if matches {
                Ok(Admin)
            } else {
                Err(ApiError::Unauthorized("invalid admin token"))
            }
        });
        std::future::ready(result)
    }
}
