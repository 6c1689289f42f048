//! The one error type of the API and its JSON envelope:
//! `{"error": {"code": "...", "message": "...", "details": [{"field": "...", "message": "..."}]}}`.
//! Internal errors are logged with their cause chain and answered with an opaque 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paperclip::actix::{Apiv2Schema, api_v2_errors};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Apiv2Schema)]
pub struct FieldError {
    /// Path of the offending field, e.g. `steps[1].wait_days`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[api_v2_errors(
    code = 400,
    description = "Malformed JSON or parameters",
    code = 401,
    description = "Missing or invalid API key",
    code = 404,
    description = "No such resource in this workspace",
    code = 409,
    description = "Conflicts with the current state",
    code = 413,
    description = "Request body too large",
    code = 422,
    description = "Validation failed; `details` names each bad field",
    code = 429,
    description = "Rate limit exceeded; see Retry-After",
    code = 500,
    description = "Internal error",
    code = 503,
    description = "The server is not configured for this request (e.g. no key to encrypt secrets)"
)]
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// A request valid in itself whose fields do not fit the stored state (a mailbox id the
    /// workspace does not have, a `step_order` another step has, ...): 409 naming each field,
    /// since 422 means the request is invalid whatever the state.
    #[error("conflicts with the current state")]
    ConflictingFields(Vec<FieldError>),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Secrets (mailbox passwords, webhook signing secrets) cannot be stored or read:
    /// `security.encryption_keys` is empty. A configuration problem of the server that the
    /// client cannot fix, hence 503.
    #[error(
        "this server cannot store or read secrets (mailbox passwords, webhook signing \
         secrets): its operator has not configured encryption keys (security.encryption_keys)"
    )]
    EncryptionUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// One field that does not fit the stored state (409).
    pub fn conflicting(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::ConflictingFields(vec![FieldError::new(field, message)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) | Self::ConflictingFields(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::EncryptionUnavailable => "encryption_not_configured",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        Self::internal(error)
    }
}

impl From<domain::db::PoolError> for ApiError {
    fn from(error: domain::db::PoolError) -> Self {
        Self::internal(error)
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::ConflictingFields(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::EncryptionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let details: &[FieldError] = match self {
            Self::Validation(details) | Self::ConflictingFields(details) => details,
            _ => &[],
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(Envelope {
            error: Body {
                code: self.code(),
                message: self.to_string(),
                details,
            },
        })
    }
}

/// The envelope for a status the framework answered by itself (an unknown method, a URI
/// too long, ...): the code is the status's reason in snake case (`method_not_allowed`).
pub fn status_envelope(status: StatusCode, message: &str) -> HttpResponse {
    let reason = status.canonical_reason().unwrap_or("error");
    let code: String = reason
        .chars()
        .filter_map(|c| match c {
            ' ' | '-' => Some('_'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    HttpResponse::build(status).json(Envelope {
        error: Body {
            code: &code,
            message: message.to_owned(),
            details: &[],
        },
    })
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn body(error: ApiError) -> (u16, serde_json::Value) {
        let response = error.error_response();
        let status = response.status().as_u16();
        let bytes = response.into_body().try_into_bytes().unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[test]
    fn validation_names_fields() {
        let (status, json) = body(ApiError::invalid("steps[0].wait_days", "must be >= 0"));
        assert_eq!(status, 422);
        assert_eq!(json["error"]["code"], "validation_failed");
        assert_eq!(json["error"]["details"][0]["field"], "steps[0].wait_days");
    }

    #[test]
    fn internal_errors_are_opaque() {
        let (status, json) = body(ApiError::internal(anyhow::anyhow!(
            "password=hunter2 leaked"
        )));
        assert_eq!(status, 500);
        assert_eq!(json["error"]["message"], "internal error");
        assert!(!json.to_string().contains("hunter2"));
    }
}
