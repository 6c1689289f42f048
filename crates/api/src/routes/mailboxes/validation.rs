//! Validation of each field given. Cross-field rules that need the stored row are in
//! `values::merge`.

use domain::outbound::OutboundGuard;

use super::model::{
    CreateMailbox, MAX_DAILY_LIMIT, MAX_FROM_NAME_LEN, MAX_PASSWORD_LEN, MAX_SPACING_SECONDS,
    MAX_USERNAME_LEN, Password, UpdateMailbox, WarmupSettings,
};
use crate::error::{ApiError, FieldError};
use crate::extract::Validate;
use crate::validation::Checks;

fn check_email(checks: &mut Checks, value: &str) {
    checks.email("email", value.trim());
}

/// Stored trimmed; checked as given, so that the limit is the one the client sees.
pub(super) fn check_from_name(checks: &mut Checks, value: &str) {
    checks.single_line("from_name", value, 1, MAX_FROM_NAME_LEN);
    checks.check(!value.trim().is_empty(), "from_name", "must not be blank");
}

fn check_host(checks: &mut Checks, prefix: &str, value: &str) {
    checks.host(&format!("{prefix}.host"), value);
}

fn check_port(checks: &mut Checks, prefix: &str, value: u16) {
    checks.check(
        value != 0,
        format!("{prefix}.port"),
        "must be between 1 and 65535",
    );
}

fn check_username(checks: &mut Checks, prefix: &str, value: &str) {
    checks.single_line(&format!("{prefix}.username"), value, 1, MAX_USERNAME_LEN);
}

fn check_password(checks: &mut Checks, prefix: &str, value: &Password) {
    // Control characters (CR, LF, NUL) cannot travel in SMTP AUTH or IMAP LOGIN.
    checks.single_line(
        &format!("{prefix}.password"),
        value.expose(),
        1,
        MAX_PASSWORD_LEN,
    );
}

/// Threshold fractions of the reputation guard.
pub(super) fn check_rates(
    checks: &mut Checks,
    max_bounce_rate: Option<f64>,
    max_complaint_rate: Option<f64>,
) {
    for (field, value) in [
        ("max_bounce_rate", max_bounce_rate),
        ("max_complaint_rate", max_complaint_rate),
    ] {
        if let Some(value) = value {
            checks.check(
                (0.0..=1.0).contains(&value),
                field,
                "must be between 0 and 1",
            );
        }
    }
}

pub(super) fn check_limits(
    checks: &mut Checks,
    daily_limit: Option<i32>,
    min_interval_seconds: Option<i32>,
    jitter_seconds: Option<i32>,
    timezone: Option<&str>,
    warmup: Option<&WarmupSettings>,
) {
    if let Some(v) = daily_limit {
        checks.range("daily_limit", v.into(), 1, MAX_DAILY_LIMIT);
    }
    if let Some(v) = min_interval_seconds {
        checks.range("min_interval_seconds", v.into(), 0, MAX_SPACING_SECONDS);
    }
    if let Some(v) = jitter_seconds {
        checks.range("jitter_seconds", v.into(), 0, MAX_SPACING_SECONDS);
    }
    if let Some(tz) = timezone {
        checks.timezone("timezone", tz);
    }
    if let Some(warmup) = warmup {
        if let Some(v) = warmup.start_limit {
            checks.range("warmup.start_limit", v.into(), 1, MAX_DAILY_LIMIT);
        }
        if let Some(v) = warmup.daily_increase {
            checks.range("warmup.daily_increase", v.into(), 0, MAX_DAILY_LIMIT);
        }
    }
}

impl Validate for CreateMailbox {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        check_email(&mut checks, &self.email);
        if let Some(name) = &self.from_name {
            check_from_name(&mut checks, name);
        }
        let smtp = &self.smtp;
        check_host(&mut checks, "smtp", &smtp.host);
        check_port(&mut checks, "smtp", smtp.port);
        if let Some(username) = &smtp.username {
            check_username(&mut checks, "smtp", username);
        }
        if let Some(password) = &smtp.password {
            check_password(&mut checks, "smtp", password);
        }
        match (&smtp.username, &smtp.password) {
            (Some(_), None) => checks.fail("smtp.password", "required with smtp.username"),
            (None, Some(_)) => checks.fail("smtp.username", "required with smtp.password"),
            _ => {}
        }
        if let Some(imap) = &self.imap {
            check_host(&mut checks, "imap", &imap.host);
            check_port(&mut checks, "imap", imap.port);
            check_username(&mut checks, "imap", &imap.username);
            check_password(&mut checks, "imap", &imap.password);
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
        checks.finish()
    }
}

impl Validate for UpdateMailbox {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(email) = &self.email {
            check_email(&mut checks, email);
        }
        if let Some(Some(name)) = &self.from_name {
            check_from_name(&mut checks, name);
        }
        if let Some(smtp) = &self.smtp {
            if let Some(host) = &smtp.host {
                check_host(&mut checks, "smtp", host);
            }
            if let Some(port) = smtp.port {
                check_port(&mut checks, "smtp", port);
            }
            if let Some(Some(username)) = &smtp.username {
                check_username(&mut checks, "smtp", username);
            }
            if let Some(password) = &smtp.password {
                check_password(&mut checks, "smtp", password);
            }
            if matches!(smtp.username, Some(None)) && smtp.password.is_some() {
                checks.fail(
                    "smtp.password",
                    "cannot be set while removing smtp.username",
                );
            }
        }
        if let Some(Some(imap)) = &self.imap {
            if let Some(host) = &imap.host {
                check_host(&mut checks, "imap", host);
            }
            if let Some(port) = imap.port {
                check_port(&mut checks, "imap", port);
            }
            if let Some(username) = &imap.username {
                check_username(&mut checks, "imap", username);
            }
            if let Some(password) = &imap.password {
                check_password(&mut checks, "imap", password);
            }
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
        checks.finish()
    }
}

/// Hosts given as IP addresses the platform does not connect to (loopback, private,
/// link-local, ...: `domain::outbound`, unless `security.allowed_private_networks` allows
/// them) are rejected when stored, naming each field; names are judged when a connection
/// resolves them.
pub(super) fn check_hosts_reachable<'a>(
    guard: &OutboundGuard,
    hosts: impl IntoIterator<Item = (&'static str, &'a str)>,
) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = hosts
        .into_iter()
        .filter_map(|(field, host)| {
            guard
                .check_literal(host)
                .err()
                .map(|refused| FieldError::new(field, refused.to_string()))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}
