//! `[oauth]`: the OAuth 2.0 clients through which Google Workspace/Gmail and Microsoft 365
//! mailboxes are connected (XOAUTH2 over SMTP and IMAP), and where their mail servers are.
//! Endpoints and servers default to the real ones and are overridable so tests can point them
//! at a local authorization server.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::mail::Security;

/// Stands for [`OAuthProviderConfig::tenant`] in the endpoint URLs (Microsoft's are per tenant).
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The public URL of the api's `/api/v1/oauth/callback` that providers redirect to; empty
    /// disables OAuth connections.
    pub redirect_url: String,
    /// How long an authorization request's `state` stays usable.
    pub state_ttl_seconds: u64,
    /// An access token is refreshed this long before it expires.
    pub refresh_before_expiry_seconds: u64,
    pub providers: OAuthProvidersConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProvidersConfig {
    pub google: OAuthProviderConfig,
    pub microsoft: OAuthProviderConfig,
}

/// One provider's OAuth client, endpoints and mail servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProviderConfig {
    /// Empty disables the provider.
    pub client_id: String,
    pub client_secret: SecretString,
    /// Replaces `{tenant}` in the endpoint URLs: Microsoft's `common`, `organizations`,
    /// `consumers` or a tenant id.
    pub tenant: String,
    pub authorize_url: String,
    pub token_url: String,
    /// Empty when the provider has no revocation endpoint (Microsoft).
    pub revoke_url: String,
    pub scopes: Vec<String>,
    /// Extra query parameters of the authorization URL. Layers merge tables rather than
    /// replace them, so a default is dropped by setting it to an empty value.
    pub authorize_params: BTreeMap<String, String>,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: Security,
    pub imap_host: String,
    pub imap_port: u16,
    /// Both providers serve IMAP with implicit TLS on 993 only; overridable for tests.
    pub imap_security: Security,
}

impl OAuthConfig {
    /// The providers' names, as in `oauth.providers.NAME` and the API's paths.
    pub const PROVIDER_NAMES: [&'static str; 2] = ["google", "microsoft"];

    /// The redirect URL, `None` when OAuth connections are disabled.
    pub fn redirect_url(&self) -> Option<&str> {
        Some(self.redirect_url.trim()).filter(|url| !url.is_empty())
    }

    /// The provider called `name` if it is enabled (and OAuth connections are).
    pub fn provider(&self, name: &str) -> Option<&OAuthProviderConfig> {
        self.redirect_url()?;
        self.all_providers()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, provider)| provider)
            .filter(|provider| provider.enabled())
    }

    /// Every provider with its name, enabled or not.
    pub fn all_providers(&self) -> impl Iterator<Item = (&'static str, &OAuthProviderConfig)> {
        Self::PROVIDER_NAMES
            .into_iter()
            .zip([&self.providers.google, &self.providers.microsoft])
    }
}

impl OAuthProviderConfig {
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }

    pub fn client_id(&self) -> &str {
        self.client_id.trim()
    }

    pub fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    pub fn authorize_url(&self) -> String {
        self.with_tenant(&self.authorize_url)
    }

    pub fn token_url(&self) -> String {
        self.with_tenant(&self.token_url)
    }

    /// The revocation endpoint, `None` when the provider has none.
    pub fn revoke_url(&self) -> Option<String> {
        Some(self.revoke_url.trim())
            .filter(|url| !url.is_empty())
            .map(|url| self.with_tenant(url))
    }

    /// The extra query parameters of the authorization URL, without those set empty.
    pub fn authorize_params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.authorize_params
            .iter()
            .map(|(name, value)| (name.as_str(), value.trim()))
            .filter(|(_, value)| !value.is_empty())
    }

    /// Whether any endpoint needs a tenant.
    pub(super) fn uses_tenant(&self) -> bool {
        [&self.authorize_url, &self.token_url, &self.revoke_url]
            .iter()
            .any(|url| url.contains(TENANT_PLACEHOLDER))
    }

    pub(super) fn client_secret_is_set(&self) -> bool {
        !self.client_secret.expose_secret().trim().is_empty()
    }

    fn with_tenant(&self, url: &str) -> String {
        url.trim().replace(TENANT_PLACEHOLDER, self.tenant.trim())
    }
}

#[cfg(test)]
mod tests;
