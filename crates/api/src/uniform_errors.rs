//! Every error the API answers is the one JSON envelope, including those the framework writes
//! by itself: a method a route does not have (405), anything an extractor of the framework
//! refuses, and request targets longer than `api.max_uri_bytes` (414, refused before
//! routing). Handlers' own errors already are envelopes ([`ApiError`]) and pass unchanged,
//! as do the HTML pages a handler answers a browser with (the OAuth callback's): the
//! framework never writes HTML.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use crate::error::status_envelope;

/// Rewrites error responses that are not JSON into the envelope, keeping their status.
pub fn envelopes<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|response: ServiceResponse<B>| {
        if is_ours(response.headers().get(CONTENT_TYPE)) {
            return Ok(ErrorHandlerResponse::Response(
                response.map_into_left_body(),
            ));
        }
        let status = response.status();
        let allow = response
            .headers()
            .get(actix_web::http::header::ALLOW)
            .cloned();
        let (request, _) = response.into_parts();
        let mut envelope = status_envelope(status, message(status));
        if let Some(allow) = allow {
            envelope
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, allow);
        }
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, envelope).map_into_right_body(),
        ))
    })
}

/// A 414 envelope when the request target is longer than `limit` bytes.
pub fn uri_too_long(request: &ServiceRequest, limit: usize) -> Option<actix_web::HttpResponse> {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    (length > limit).then(|| {
        status_envelope(
            StatusCode::URI_TOO_LONG,
            &format!("the request target is longer than {limit} bytes"),
        )
    })
}

/// JSON (an envelope) or an HTML page: written by a handler.
fn is_ours(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        })
}

fn message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "route not found",
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method",
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported content type",
        StatusCode::URI_TOO_LONG => "request target too long",
        status if status.is_server_error() => "internal error",
        _ => "the request could not be processed",
    }
}
