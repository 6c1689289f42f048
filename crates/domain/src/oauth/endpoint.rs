//! A provider's endpoint URL, parsed when used.

use reqwest::Url;

/// An endpoint of `oauth.providers.*` that is not a URL. Configuration validation refuses
/// these at startup, so this is a programming or configuration error, not the user's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the provider's {endpoint} URL is invalid: {reason}")]
pub struct InvalidEndpoint {
    /// `authorize_url`, `token_url` or `revoke_url`.
    pub endpoint: &'static str,
    pub reason: String,
}

pub(super) fn parse(endpoint: &'static str, url: &str) -> Result<Url, InvalidEndpoint> {
    // url's ParseError names the problem, never the input, so it may be shown as it is.
    Url::parse(url).map_err(|error| InvalidEndpoint {
        endpoint,
        reason: error.to_string(),
    })
}
