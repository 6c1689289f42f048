//! What is stored: the row's values from a create request, a partial update merged into the
//! stored row, and passwords encrypted on the way.

use chrono::{NaiveDate, Utc};
use domain::crypto::{CryptoError, SecretCipher};
use domain::db::mailboxes::{self as db, MailboxValues, status};
use domain::mail;
use uuid::Uuid;

use super::model::{
    CreateMailbox, DEFAULT_DAILY_LIMIT, DEFAULT_JITTER_SECONDS, DEFAULT_MAX_BOUNCE_RATE,
    DEFAULT_MAX_COMPLAINT_RATE, DEFAULT_MIN_INTERVAL_SECONDS, DEFAULT_TIMEZONE,
    DEFAULT_WARMUP_DAILY_INCREASE, DEFAULT_WARMUP_START_LIMIT, Password, SettableStatus,
    UpdateMailbox,
};
use crate::error::ApiError;
use crate::validation::Checks;

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Today in the mailbox's timezone: the first day of a warmup ramp.
fn today_in(timezone: &str) -> NaiveDate {
    let now = Utc::now();
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now.with_timezone(&tz).date_naive(),
        Err(_) => now.date_naive(),
    }
}

fn encrypt(
    cipher: Option<&SecretCipher>,
    password: &Password,
    context: &str,
) -> Result<Vec<u8>, ApiError> {
    let cipher = cipher.ok_or(ApiError::EncryptionUnavailable)?;
    cipher
        .encrypt(&password.0, context)
        .map_err(|error| match error {
            CryptoError::NotConfigured => ApiError::EncryptionUnavailable,
            other => ApiError::internal(other),
        })
}

pub(super) fn new_values(
    id: Uuid,
    body: &CreateMailbox,
    cipher: Option<&SecretCipher>,
) -> Result<MailboxValues, ApiError> {
    let timezone = body
        .timezone
        .clone()
        .unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
    let warmup = body.warmup.as_ref();
    let warmup_enabled = warmup.and_then(|w| w.enabled).unwrap_or(false);
    let smtp_password_encrypted = match &body.smtp.password {
        Some(password) => Some(encrypt(cipher, password, &db::smtp_password_context(id))?),
        None => None,
    };
    let imap = body.imap.as_ref();
    let imap_password_encrypted = match imap {
        Some(imap) => Some(encrypt(
            cipher,
            &imap.password,
            &db::imap_password_context(id),
        )?),
        None => None,
    };
    Ok(MailboxValues {
        email: normalize_email(&body.email),
        display_name: body.from_name.as_deref().map(|n| n.trim().to_owned()),
        smtp_host: body.smtp.host.trim().to_owned(),
        smtp_port: body.smtp.port.into(),
        smtp_security: mail::Security::from(body.smtp.security).as_str().to_owned(),
        smtp_username: body.smtp.username.clone(),
        smtp_password_encrypted,
        imap_host: imap.map(|i| i.host.trim().to_owned()),
        imap_port: imap.map(|i| i.port.into()),
        imap_security: imap.map(|i| mail::Security::from(i.security).as_str().to_owned()),
        imap_username: imap.map(|i| i.username.clone()),
        imap_password_encrypted,
        daily_limit: body.daily_limit.unwrap_or(DEFAULT_DAILY_LIMIT),
        warmup_enabled,
        warmup_start_limit: warmup
            .and_then(|w| w.start_limit)
            .unwrap_or(DEFAULT_WARMUP_START_LIMIT),
        warmup_daily_increase: warmup
            .and_then(|w| w.daily_increase)
            .unwrap_or(DEFAULT_WARMUP_DAILY_INCREASE),
        warmup_started_on: warmup_enabled.then(|| today_in(&timezone)),
        min_interval_seconds: body
            .min_interval_seconds
            .unwrap_or(DEFAULT_MIN_INTERVAL_SECONDS),
        max_jitter_seconds: body.jitter_seconds.unwrap_or(DEFAULT_JITTER_SECONDS),
        timezone,
        status: body
            .status
            .map_or(status::ACTIVE, SettableStatus::as_str)
            .to_owned(),
        status_reason: None,
        max_bounce_rate: body.max_bounce_rate.unwrap_or(DEFAULT_MAX_BOUNCE_RATE),
        max_complaint_rate: body
            .max_complaint_rate
            .unwrap_or(DEFAULT_MAX_COMPLAINT_RATE),
    })
}

/// Applies a partial update to the stored row. Changing any SMTP or IMAP connection setting
/// of a mailbox in `error` moves it back to `active` (the error was about the old settings),
/// unless the update sets a status itself.
///
/// A mailbox connected with OAuth (`oauth`) logs in as its connected account: its address
/// and SMTP/IMAP usernames and passwords are not the client's to change (a reconnect is).
/// `reconnect_required` is left by a reconnect only, never by setting `active`.
pub(super) fn merge(
    current: db::Mailbox,
    body: &UpdateMailbox,
    cipher: Option<&SecretCipher>,
    oauth: bool,
) -> Result<MailboxValues, ApiError> {
    let id = current.id;
    let mut v = MailboxValues::from(current);
    let mut checks = Checks::default();
    if oauth {
        refuse_credentials(&mut checks, body);
    }
    if v.status == status::RECONNECT_REQUIRED && body.status == Some(SettableStatus::Active) {
        checks.fail(
            "status",
            "the OAuth provider no longer accepts the mailbox's grant: reconnect it with \
             POST /mailboxes/{id}/oauth/reconnect, which makes it active",
        );
    }
    let mut connection_changed = false;
    let mut new_smtp_password = None;
    let mut new_imap_password = None;

    if let Some(email) = &body.email {
        v.email = normalize_email(email);
    }
    if let Some(name) = &body.from_name {
        v.display_name = name.as_deref().map(|n| n.trim().to_owned());
    }

    if let Some(smtp) = &body.smtp {
        if let Some(host) = &smtp.host {
            connection_changed |= set(&mut v.smtp_host, host.trim().to_owned());
        }
        if let Some(port) = smtp.port {
            connection_changed |= set(&mut v.smtp_port, port.into());
        }
        if let Some(security) = smtp.security {
            connection_changed |= set(
                &mut v.smtp_security,
                mail::Security::from(security).as_str().to_owned(),
            );
        }
        match &smtp.username {
            Some(None) => {
                connection_changed |= v.smtp_username.is_some();
                v.smtp_username = None;
                v.smtp_password_encrypted = None;
            }
            Some(Some(username)) => {
                connection_changed |= set(&mut v.smtp_username, Some(username.clone()));
            }
            None => {}
        }
        if let Some(password) = &smtp.password {
            if v.smtp_username.is_none() {
                checks.fail("smtp.username", "required with smtp.password");
            }
            new_smtp_password = Some(password);
            connection_changed = true;
        }
        if v.smtp_username.is_some()
            && v.smtp_password_encrypted.is_none()
            && new_smtp_password.is_none()
        {
            checks.fail("smtp.password", "required with smtp.username");
        }
    }

    match &body.imap {
        None => {}
        Some(None) => {
            connection_changed |= v.imap_host.is_some();
            v.imap_host = None;
            v.imap_port = None;
            v.imap_security = None;
            v.imap_username = None;
            v.imap_password_encrypted = None;
        }
        Some(Some(imap)) => {
            let adding = v.imap_host.is_none();
            let required = |checks: &mut Checks, field: &str| {
                checks.fail(
                    format!("imap.{field}"),
                    "required when adding IMAP settings",
                );
            };
            match &imap.host {
                Some(host) => {
                    connection_changed |= set(&mut v.imap_host, Some(host.trim().to_owned()))
                }
                None if adding => required(&mut checks, "host"),
                None => {}
            }
            match imap.port {
                Some(port) => connection_changed |= set(&mut v.imap_port, Some(port.into())),
                None if adding => required(&mut checks, "port"),
                None => {}
            }
            match imap.security {
                Some(security) => {
                    let security = mail::Security::from(security).as_str().to_owned();
                    connection_changed |= set(&mut v.imap_security, Some(security));
                }
                None if v.imap_security.is_none() => required(&mut checks, "security"),
                None => {}
            }
            match &imap.username {
                Some(username) => {
                    connection_changed |= set(&mut v.imap_username, Some(username.clone()));
                }
                None if v.imap_username.is_none() => required(&mut checks, "username"),
                None => {}
            }
            match &imap.password {
                Some(password) => {
                    new_imap_password = Some(password);
                    connection_changed = true;
                }
                None if v.imap_password_encrypted.is_none() => {
                    required(&mut checks, "password");
                }
                None => {}
            }
        }
    }

    if let Some(limit) = body.daily_limit {
        v.daily_limit = limit;
    }
    if let Some(seconds) = body.min_interval_seconds {
        v.min_interval_seconds = seconds;
    }
    if let Some(seconds) = body.jitter_seconds {
        v.max_jitter_seconds = seconds;
    }
    if let Some(timezone) = &body.timezone {
        v.timezone = timezone.clone();
    }
    if let Some(rate) = body.max_bounce_rate {
        v.max_bounce_rate = rate;
    }
    if let Some(rate) = body.max_complaint_rate {
        v.max_complaint_rate = rate;
    }
    if let Some(warmup) = &body.warmup {
        if let Some(limit) = warmup.start_limit {
            v.warmup_start_limit = limit;
        }
        if let Some(increase) = warmup.daily_increase {
            v.warmup_daily_increase = increase;
        }
        match warmup.enabled {
            Some(true) if !v.warmup_enabled => {
                v.warmup_enabled = true;
                v.warmup_started_on = Some(today_in(&v.timezone));
            }
            Some(false) => {
                v.warmup_enabled = false;
                v.warmup_started_on = None;
            }
            _ => {}
        }
    }

    match body.status {
        Some(requested) => {
            v.status = requested.as_str().to_owned();
            v.status_reason = None;
        }
        None if connection_changed && v.status == status::ERROR => {
            v.status = status::ACTIVE.to_owned();
            v.status_reason = None;
        }
        None => {}
    }

    // What fails here depends on the stored settings (a 409; the request's own fields were
    // checked before). Encrypted only once the request is known to fit: a bad field is a 4xx
    // even on a server without encryption keys.
    checks.finish().map_err(ApiError::ConflictingFields)?;
    if let Some(password) = new_smtp_password {
        let context = db::smtp_password_context(id);
        v.smtp_password_encrypted = Some(encrypt(cipher, password, &context)?);
    }
    if let Some(password) = new_imap_password {
        let context = db::imap_password_context(id);
        v.imap_password_encrypted = Some(encrypt(cipher, password, &context)?);
    }
    Ok(v)
}

/// The fields of an update that an OAuth mailbox's connected account determines.
fn refuse_credentials(checks: &mut Checks, body: &UpdateMailbox) {
    const WHY: &str = "the mailbox is connected with OAuth and logs in as its connected \
                       account; connect another account instead";
    if body.email.is_some() {
        checks.fail("email", WHY);
    }
    if let Some(smtp) = &body.smtp {
        if smtp.username.is_some() {
            checks.fail("smtp.username", WHY);
        }
        if smtp.password.is_some() {
            checks.fail("smtp.password", WHY);
        }
    }
    if let Some(Some(imap)) = &body.imap {
        if imap.username.is_some() {
            checks.fail("imap.username", WHY);
        }
        if imap.password.is_some() {
            checks.fail("imap.password", WHY);
        }
    }
}

/// Sets `slot` to `value`; true when that changed it.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

type ImapConnection = (
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// What the inbox watcher connects with.
pub(super) fn imap_settings(m: &db::Mailbox) -> ImapConnection {
    (
        m.imap_host.clone(),
        m.imap_port,
        m.imap_security.clone(),
        m.imap_username.clone(),
        m.imap_password_encrypted.clone(),
    )
}
