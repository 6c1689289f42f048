//! Request and response shapes of OAuth connections, and their validation.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use paperclip::actix::Apiv2Schema;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::super::model::{CreateMailbox, SmtpSettings, UpdateMailbox, WarmupSettings};
use super::super::validation::{check_from_name, check_limits, check_rates};
use crate::error::FieldError;
use crate::extract::Validate;
use crate::validation::Checks;

/// The settings of the mailbox to connect that are not credentials (those come from the
/// provider), plus where the user goes afterwards. Stored with the authorization request
/// (without `login_hint` and `return_url`, which have their own columns) until the callback.
#[derive(Debug, Default, Serialize, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeMailbox {
    /// Display name of the From header.
    pub from_name: Option<String>,
    /// Sends per local day, 1 to 10000 (default 30).
    pub daily_limit: Option<i32>,
    /// Least time between two sends, 0 to 86400 s (default 120).
    pub min_interval_seconds: Option<i32>,
    /// Random extra time added to the interval, up to this many seconds, 0 to 86400 (default 60).
    pub jitter_seconds: Option<i32>,
    /// IANA timezone of the mailbox's sending day (default UTC).
    pub timezone: Option<String>,
    pub warmup: Option<WarmupSettings>,
    /// See `max_bounce_rate` of `POST /mailboxes` (0 to 1; default 0.05).
    pub max_bounce_rate: Option<f64>,
    /// See `max_complaint_rate` of `POST /mailboxes` (0 to 1; default 0.003).
    pub max_complaint_rate: Option<f64>,
    /// The address to connect, pre-filled on the provider's sign-in page.
    pub login_hint: Option<String>,
    /// Where the user's browser is sent after the callback, with `mailbox_id` and
    /// `status=connected`, or `error`, added to its query. An absolute `https://` URL
    /// (`http://` only on loopback); without it the callback answers a small HTML page.
    pub return_url: Option<String>,
}

/// Starts a reconnection; every field is optional (the body may be empty).
#[derive(Debug, Default, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ReconnectMailbox {
    /// As `return_url` of the authorize request.
    pub return_url: Option<String>,
}

/// Where to send the user to grant access.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AuthorizationStarted {
    /// The provider's consent page; single use (its `state`), valid until `expires_at`.
    pub authorization_url: String,
    pub expires_at: DateTime<Utc>,
}

/// Longest `return_url`, in characters.
const MAX_RETURN_URL_LEN: usize = 2048;

/// A URL the callback may redirect a browser to: absolute, `https` (or `http` on loopback,
/// for local apps and tests), without credentials.
fn check_return_url(checks: &mut Checks, value: &str) {
    let message = "must be an absolute https:// URL (http:// only for localhost), without \
                   user or password";
    let Ok(url) = Url::parse(value) else {
        return checks.fail("return_url", message);
    };
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let ok = !host.is_empty()
        && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.username().is_empty()
        && url.password().is_none()
        && value.chars().count() <= MAX_RETURN_URL_LEN
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    checks.check(ok, "return_url", message);
}

impl Validate for AuthorizeMailbox {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(name) = &self.from_name {
            check_from_name(&mut checks, name);
        }
        check_limits(
            &mut checks,
            self.daily_limit,
            self.min_interval_seconds,
            self.jitter_seconds,
            self.timezone.as_deref(),
            self.warmup.as_ref(),
        );
        check_rates(&mut checks, self.max_bounce_rate, self.max_complaint_rate);
        if let Some(hint) = &self.login_hint {
            checks.email("login_hint", hint.trim());
        }
        if let Some(url) = &self.return_url {
            check_return_url(&mut checks, url);
        }
        checks.finish()
    }
}

impl Validate for ReconnectMailbox {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(url) = &self.return_url {
            check_return_url(&mut checks, url);
        }
        checks.finish()
    }
}

impl AuthorizeMailbox {
    /// The request for a new mailbox with these settings; the caller sets the connection.
    pub(super) fn into_create(self, address: &str, smtp: SmtpSettings) -> CreateMailbox {
        CreateMailbox {
            email: address.to_owned(),
            from_name: self.from_name,
            smtp,
            imap: None,
            daily_limit: self.daily_limit,
            min_interval_seconds: self.min_interval_seconds,
            jitter_seconds: self.jitter_seconds,
            timezone: self.timezone,
            status: None,
            warmup: self.warmup,
            max_bounce_rate: self.max_bounce_rate,
            max_complaint_rate: self.max_complaint_rate,
        }
    }

    /// The update of an existing mailbox with the settings given (the others stay).
    pub(super) fn into_update(self) -> UpdateMailbox {
        UpdateMailbox {
            email: None,
            from_name: self.from_name.map(Some),
            smtp: None,
            imap: None,
            daily_limit: self.daily_limit,
            min_interval_seconds: self.min_interval_seconds,
            jitter_seconds: self.jitter_seconds,
            timezone: self.timezone,
            status: None,
            warmup: self.warmup,
            max_bounce_rate: self.max_bounce_rate,
            max_complaint_rate: self.max_complaint_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn return_url_errors(url: &str) -> usize {
        let body = ReconnectMailbox {
            return_url: Some(url.to_owned()),
        };
        body.validate().err().map_or(0, |errors| errors.len())
    }

    #[test]
    fn return_urls_are_https_or_loopback_http_without_credentials() {
        for ok in [
            "https://app.example.com/mailboxes?tab=1",
            "http://127.0.0.1:8080/done",
            "http://localhost/done",
            "http://[::1]:3000/",
        ] {
            assert_eq!(return_url_errors(ok), 0, "{ok}");
        }
        for bad in [
            "http://app.example.com/done",
            "/relative/path",
            "javascript:alert(1)",
            "https://user:pw@app.example.com/",
            "https://app.example.com/a b",
            "ftp://app.example.com/",
            "",
        ] {
            assert_eq!(return_url_errors(bad), 1, "{bad}");
        }
    }
}
