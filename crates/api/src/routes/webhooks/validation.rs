//! What a webhook endpoint may be: its URL (syntax here; what the outbound guard says about
//! its host in [`check_reachable`]), its event types and its description.

use domain::outbound::{OutboundGuard, parse_literal};
use domain::webhooks::event_types;
use reqwest::Url;

use super::model::{CreateWebhook, MAX_DESCRIPTION_LEN, UpdateWebhook};
use crate::error::{ApiError, FieldError};
use crate::extract::Validate;
use crate::validation::{Checks, MAX_URL_LEN, check_text};

/// The URL's syntax: absolute `https://` or `http://` with a host, without user name,
/// password (they would travel in clear in logs and headers) or fragment (never sent), at
/// most [`MAX_URL_LEN`] characters, no whitespace or control characters (which the parser
/// would silently drop).
pub(super) fn parse_url(text: &str) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let url = Url::parse(text).map_err(|e| format!("must be an absolute https:// URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("must be an https:// URL".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment (#...)".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    Ok(url)
}

/// What the outbound guard allows: a host given as an IP address it refuses is refused now
/// (names are judged when a delivery resolves them), and plain `http://` is only for an IP
/// address in `security.allowed_private_networks`: events and their signatures do not cross
/// the internet unencrypted.
pub(super) fn check_reachable(guard: &OutboundGuard, url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    guard
        .check_literal(host)
        .map_err(|refused| refused.to_string())?;
    if url.scheme() == "http" {
        let allowed = parse_literal(host).is_some_and(|ip| guard.is_allowed_network(ip));
        if !allowed {
            return Err(
                "must be an https:// URL (http:// is accepted only for an IP address in the \
                 networks the operator allows, security.allowed_private_networks)"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// [`parse_url`] then [`check_reachable`], as a 422 naming `url`; the normalised URL.
pub(super) fn accepted_url(guard: &OutboundGuard, text: &str) -> Result<String, ApiError> {
    let url = parse_url(text).map_err(|message| ApiError::invalid("url", message))?;
    check_reachable(guard, &url).map_err(|message| ApiError::invalid("url", message))?;
    Ok(url.into())
}

fn check_url(checks: &mut Checks, value: &str) {
    if let Err(message) = parse_url(value) {
        checks.fail("url", message);
    }
}

fn check_event_types(checks: &mut Checks, names: &[String]) {
    for (index, name) in names.iter().enumerate() {
        let field = format!("event_types[{index}]");
        if !event_types::is_known(name) {
            checks.fail(
                field,
                format!("must be one of {}", event_types::ALL.join(", ")),
            );
        } else if names[..index].contains(name) {
            checks.fail(field, "is listed twice");
        }
    }
}

fn check_description(checks: &mut Checks, value: &str) {
    if let Err(message) = check_text(value, MAX_DESCRIPTION_LEN) {
        checks.fail("description", message);
    }
}

impl Validate for CreateWebhook {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        check_url(&mut checks, &self.url);
        check_event_types(&mut checks, &self.event_types);
        if let Some(description) = &self.description {
            check_description(&mut checks, description);
        }
        checks.finish()
    }
}

impl Validate for UpdateWebhook {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(url) = &self.url {
            check_url(&mut checks, url);
        }
        if let Some(names) = &self.event_types {
            check_event_types(&mut checks, names);
        }
        if let Some(Some(description)) = &self.description {
            check_description(&mut checks, description);
        }
        checks.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_allowed() -> OutboundGuard {
        OutboundGuard::new(vec![
            "127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}")),
            "::1/128".parse().unwrap_or_else(|e| panic!("{e}")),
        ])
    }

    fn accepted(guard: &OutboundGuard, text: &str) -> Result<String, String> {
        let url = parse_url(text)?;
        check_reachable(guard, &url)?;
        Ok(url.into())
    }

    #[test]
    fn https_urls_are_accepted_and_normalised() {
        let guard = OutboundGuard::default();
        for (given, stored) in [
            (
                "https://hooks.example.com/in",
                "https://hooks.example.com/in",
            ),
            ("https://Hooks.Example.com", "https://hooks.example.com/"),
            (
                "https://hooks.example.com:8443/a?b=c",
                "https://hooks.example.com:8443/a?b=c",
            ),
            ("https://8.8.8.8/x", "https://8.8.8.8/x"),
            ("https://[2606:4700::1111]/x", "https://[2606:4700::1111]/x"),
        ] {
            assert_eq!(accepted(&guard, given).as_deref(), Ok(stored), "{given}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for text in [
            "hooks.example.com/in",
            "/in",
            "ftp://example.com/",
            "mailto:jane@example.com",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "https://example.com/#top",
            "https://example.com/ in",
            "https://example.com/\tin",
            "https://",
            long.as_str(),
        ] {
            assert!(parse_url(text).is_err(), "{text}");
        }
    }

    #[test]
    fn http_is_only_for_allowed_private_addresses() {
        let strict = OutboundGuard::default();
        let loopback = loopback_allowed();
        assert!(accepted(&loopback, "http://127.0.0.1:8080/hook").is_ok());
        assert!(accepted(&loopback, "http://[::1]:8080/hook").is_ok());
        assert!(accepted(&loopback, "http://127.1/hook").is_ok());
        for refused in [
            "http://hooks.example.com/",
            "http://localhost/",
            "http://8.8.8.8/",
        ] {
            let error = accepted(&loopback, refused).err().unwrap_or_default();
            assert!(error.contains("https://"), "{refused}: {error}");
        }
        // Without an allowlist loopback is refused whatever the scheme.
        for refused in ["http://127.0.0.1/", "https://127.0.0.1/", "https://[::1]/"] {
            let error = accepted(&strict, refused).err().unwrap_or_default();
            assert!(error.contains("not a public address"), "{refused}: {error}");
        }
    }

    #[test]
    fn private_addresses_are_refused_over_https_too() {
        let guard = loopback_allowed();
        for refused in [
            "https://169.254.169.254/latest",
            "https://10.0.0.1/",
            "https://[fd00::1]/",
            "https://[::ffff:169.254.169.254]/",
        ] {
            let error = accepted(&guard, refused).err().unwrap_or_default();
            assert!(error.contains("not a public address"), "{refused}: {error}");
        }
        // A name is judged when a delivery resolves it.
        assert!(accepted(&guard, "https://metadata.internal.example/").is_ok());
    }

    #[test]
    fn event_types_must_be_known_and_listed_once() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let fields = |list: &[&str]| {
            let mut checks = Checks::default();
            check_event_types(&mut checks, &names(list));
            checks
                .finish()
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert!(fields(&[]).is_empty());
        assert!(fields(&["message.sent", "contact.replied"]).is_empty());
        assert_eq!(fields(&["message.sent", "message.sen"]), ["event_types[1]"]);
        assert_eq!(
            fields(&["message.sent", "contact.replied", "message.sent"]),
            ["event_types[2]"]
        );
    }
}
