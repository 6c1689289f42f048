//! Why a token endpoint call gave no tokens.

use super::endpoint::InvalidEndpoint;
use crate::outbound::REFUSED;

/// The error of a [`super::TokenClient`] call. No variant's text holds a token, code,
/// verifier or client secret: provider descriptions are the provider's words (bounded),
/// everything else is this module's own.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider's `error` is `invalid_grant`: the code or refresh token is used, expired
    /// or revoked, or the user withdrew consent. Retrying cannot help; the mailbox must be
    /// connected again (`reconnect_required`).
    #[error(
        "the authorization server no longer accepts the grant (invalid_grant{})",
        parenthesised(description)
    )]
    InvalidGrant { description: String },
    /// Any other answer that is not a success: an OAuth error (RFC 6749 5.2) such as
    /// `invalid_client`, or a status without one (`error` is then empty).
    #[error(
        "the authorization server answered HTTP {status}{}",
        oauth_error(error, description)
    )]
    Provider {
        status: u16,
        error: String,
        description: String,
    },
    /// The outbound guard refused the endpoint's host; nothing was sent.
    #[error("{REFUSED}")]
    Refused,
    /// The request did not get an answer: DNS, connection, TLS, timeout.
    #[error("could not reach the authorization server: {0}")]
    Transport(String),
    /// A success status whose body is not a token answer.
    #[error("the authorization server's answer is not a token answer: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    InvalidEndpoint(#[from] InvalidEndpoint),
}

impl TokenError {
    /// Whether the grant is gone for good and the user must connect the mailbox again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, TokenError::InvalidGrant { .. })
    }
}

fn parenthesised(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(": {description}")
    }
}

fn oauth_error(error: &str, description: &str) -> String {
    match (error.is_empty(), description.is_empty()) {
        (true, _) => " without an OAuth error".to_owned(),
        (false, true) => format!(": {error}"),
        (false, false) => format!(": {error} ({description})"),
    }
}
