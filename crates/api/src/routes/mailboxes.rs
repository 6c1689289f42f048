//! `/api/v1/mailboxes`: the workspace's sending mailboxes (SMTP, optional IMAP for reply
//! detection, daily limit, spacing, timezone, warmup, status), and
//! `POST /api/v1/mailboxes/{id}/verify`, which tries the stored settings on the servers.
//!
//! Passwords are encrypted with `AppState.cipher` before they are stored (associated data
//! `mailboxes.smtp_password:<id>` / `mailboxes.imap_password:<id>`), decrypted in memory only
//! by `verify`, and never returned nor logged: responses carry `password_set` instead.
//!
//! `PUT` is a partial update: omitted fields keep their values (an omitted password keeps
//! the stored one), `null` clears what may be empty (`from_name`, `imap`, `smtp.username`).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use domain::crypto::{CryptoError, SecretCipher};
use domain::db::inbox;
use domain::db::mailboxes::{self as db, MailboxValues, status};
use domain::mail;
use domain::mail::mailbox_check::CheckSetupError;
use domain::outbound::OutboundGuard;
use paperclip::actix::{Apiv2Schema, CreatedJson, NoContent, api_v2_operation, web};
use paperclip::v2::models::{DataType, DataTypeFormat};
use paperclip::v2::schema::TypedData;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::pagination::{Page, PageRequest};
use crate::state::AppState;
use crate::validation::Checks;

const DEFAULT_DAILY_LIMIT: i32 = 30;
pub(crate) const MAX_DAILY_LIMIT: i64 = 10_000;
const DEFAULT_MIN_INTERVAL_SECONDS: i32 = 120;
const DEFAULT_JITTER_SECONDS: i32 = 60;
/// A day: spacing beyond that is a typo, not a sending strategy.
pub(crate) const MAX_SPACING_SECONDS: i64 = 86_400;
/// Longest `from_name`, SMTP/IMAP username and password, in characters.
pub(crate) const MAX_FROM_NAME_LEN: usize = 200;
pub(crate) const MAX_USERNAME_LEN: usize = 320;
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;
const DEFAULT_WARMUP_START_LIMIT: i32 = 5;
const DEFAULT_WARMUP_DAILY_INCREASE: i32 = 2;
const DEFAULT_TIMEZONE: &str = "UTC";
/// The reputation guard's defaults: 5 % hard bounces over the last 50 sends, 0.3 % spam
/// complaints over the last 200 (the line Gmail's sender guidelines draw).
pub(crate) const DEFAULT_MAX_BOUNCE_RATE: f64 = 0.05;
pub(crate) const DEFAULT_MAX_COMPLAINT_RATE: f64 = 0.003;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mailboxes")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/mailboxes/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/mailboxes/{id}/verify").route(web::post().to(verify)));
}

// ---------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------

/// Transport security: `none` (plaintext), `starttls` (upgrade required, typically ports 587
/// and 143) or `tls` (TLS from the first byte, typically ports 465 and 993).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Apiv2Schema)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    None,
    Starttls,
    Tls,
}

impl From<Security> for mail::Security {
    fn from(security: Security) -> Self {
        match security {
            Security::None => mail::Security::None,
            Security::Starttls => mail::Security::Starttls,
            Security::Tls => mail::Security::Tls,
        }
    }
}

impl From<mail::Security> for Security {
    fn from(security: mail::Security) -> Self {
        match security {
            mail::Security::None => Security::None,
            mail::Security::Starttls => Security::Starttls,
            mail::Security::Tls => Security::Tls,
        }
    }
}

/// What a client may set. `error` is set by the system only (a failed verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Apiv2Schema)]
#[serde(rename_all = "lowercase")]
pub enum SettableStatus {
    Active,
    Paused,
    Disabled,
}

impl SettableStatus {
    fn as_str(self) -> &'static str {
        match self {
            SettableStatus::Active => status::ACTIVE,
            SettableStatus::Paused => status::PAUSED,
            SettableStatus::Disabled => status::DISABLED,
        }
    }
}

/// `active` sends, `paused` and `disabled` do not (set by the client; the reputation guard
/// also pauses a mailbox, with the reason in `status_reason`), `error` does not either: the
/// server refused the login or the sender, or the last check failed (see `status_reason`);
/// it is re-checked automatically (`next_check_at`) and becomes `active` when a check
/// passes. Messages of a mailbox that cannot send wait; none is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Apiv2Schema)]
#[serde(rename_all = "lowercase")]
pub enum MailboxStatus {
    Active,
    Paused,
    Error,
    Disabled,
}

impl MailboxStatus {
    fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            status::ACTIVE => Ok(Self::Active),
            status::PAUSED => Ok(Self::Paused),
            status::ERROR => Ok(Self::Error),
            status::DISABLED => Ok(Self::Disabled),
            other => Err(ApiError::internal(anyhow::anyhow!(
                "mailbox status `{other}` is unknown"
            ))),
        }
    }
}

/// A password: write-only. Never returned, never logged (`Debug` prints `[REDACTED]`).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Password(SecretString);

impl TypedData for Password {
    fn data_type() -> DataType {
        DataType::String
    }

    fn format() -> Option<DataTypeFormat> {
        Some(DataTypeFormat::Password)
    }
}

impl Password {
    fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent (with `#[serde(default)]`).
fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Omit (with `password`) for a server that needs no authentication.
    pub username: Option<String>,
    /// Required with `username`. Encrypted at rest, never returned.
    pub password: Option<Password>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    /// Encrypted at rest, never returned.
    pub password: Password,
}

#[derive(Debug, Default, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct WarmupSettings {
    /// Ramp the daily limit up from `start_limit`; (re-)enabling starts the ramp today.
    pub enabled: Option<bool>,
    /// The limit on the first day (1 to 10000; default 5).
    pub start_limit: Option<i32>,
    /// Added to the limit each day, up to `daily_limit` (0 to 10000; default 2).
    pub daily_increase: Option<i32>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateMailbox {
    /// The sending address; stored lower-cased, unique in the workspace.
    pub email: String,
    /// Display name of the From header.
    pub from_name: Option<String>,
    pub smtp: SmtpSettings,
    /// For reply detection; omit or `null` for none.
    pub imap: Option<ImapSettings>,
    /// Sends per local day, 1 to 10000 (default 30).
    pub daily_limit: Option<i32>,
    /// Least time between two sends, 0 to 86400 s (default 120).
    pub min_interval_seconds: Option<i32>,
    /// Random extra time added to the interval, up to this many seconds, 0 to 86400 (default 60).
    pub jitter_seconds: Option<i32>,
    /// IANA timezone of the mailbox's sending day (default UTC).
    pub timezone: Option<String>,
    /// Default `active`.
    pub status: Option<SettableStatus>,
    pub warmup: Option<WarmupSettings>,
    /// The reputation guard pauses the mailbox when its hard bounces among its latest 50
    /// sends, divided by the larger of those sends and 50, exceed this fraction (0 to 1;
    /// default 0.05).
    pub max_bounce_rate: Option<f64>,
    /// The reputation guard pauses the mailbox when the spam complaints about its latest 200
    /// sends, divided by the larger of those sends and 200, exceed this fraction (0 to 1;
    /// default 0.003).
    pub max_complaint_rate: Option<f64>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SmtpUpdate {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    /// `null` removes authentication (and the stored password).
    #[serde(default, deserialize_with = "nullable")]
    pub username: Option<Option<String>>,
    /// Replaces the stored password; omitted keeps it.
    pub password: Option<Password>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ImapUpdate {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub username: Option<String>,
    /// Replaces the stored password; omitted keeps it.
    pub password: Option<Password>,
}

/// Partial update: omitted fields keep their values.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMailbox {
    pub email: Option<String>,
    /// `null` removes the display name.
    #[serde(default, deserialize_with = "nullable")]
    pub from_name: Option<Option<String>>,
    /// Fields given replace the stored ones.
    pub smtp: Option<SmtpUpdate>,
    /// `null` removes IMAP settings. Adding them requires every field; changing them, only
    /// the fields that change.
    #[serde(default, deserialize_with = "nullable")]
    pub imap: Option<Option<ImapUpdate>>,
    pub daily_limit: Option<i32>,
    pub min_interval_seconds: Option<i32>,
    pub jitter_seconds: Option<i32>,
    pub timezone: Option<String>,
    /// Setting a status clears `status_reason`; `active` resumes a mailbox the reputation
    /// guard paused.
    pub status: Option<SettableStatus>,
    pub warmup: Option<WarmupSettings>,
    /// See `max_bounce_rate` of the create request (0 to 1).
    pub max_bounce_rate: Option<f64>,
    /// See `max_complaint_rate` of the create request (0 to 1).
    pub max_complaint_rate: Option<f64>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SmtpView {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    /// Whether a password is stored (passwords are never returned).
    pub password_set: bool,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ImapView {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    /// Whether a password is stored (passwords are never returned).
    pub password_set: bool,
    /// How the inbox watcher is doing with this mailbox (replies, bounces); absent until a
    /// watcher first saw the mailbox.
    pub watch: Option<InboxWatchView>,
}

/// The inbox watcher's state for a mailbox.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct InboxWatchView {
    /// `pending` (not read yet), `connecting`, `idle` (waiting with IMAP IDLE), `polling`, or
    /// `error` (see `last_error`; the watcher retries with a growing pause).
    pub status: String,
    /// What went wrong last, while `status` is `error` or a reconnection is under way. Never
    /// contains the password.
    pub last_error: Option<String>,
    /// Failed connections or commands in a row.
    pub consecutive_failures: i32,
    /// When the inbox was last read completely.
    pub last_checked_at: Option<DateTime<Utc>>,
}

/// Fills in each mailbox's `imap.watch`.
async fn attach_watches(
    conn: &mut diesel_async::AsyncPgConnection,
    mailboxes: &mut [Mailbox],
) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = mailboxes
        .iter()
        .filter(|m| m.imap.is_some())
        .map(|m| m.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let states = inbox::states(conn, &ids).await?;
    for mailbox in mailboxes {
        let state = states.iter().find(|s| s.mailbox_id == mailbox.id);
        if let (Some(imap), Some(state)) = (mailbox.imap.as_mut(), state) {
            imap.watch = Some(InboxWatchView {
                status: state.status.clone(),
                last_error: state.last_error.clone(),
                consecutive_failures: state.consecutive_failures,
                last_checked_at: state.last_checked_at,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WarmupView {
    pub enabled: bool,
    pub start_limit: i32,
    pub daily_increase: i32,
    /// The first day of the ramp (in the mailbox's timezone); set while enabled.
    pub started_on: Option<NaiveDate>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Mailbox {
    pub id: Uuid,
    pub email: String,
    pub from_name: Option<String>,
    pub smtp: SmtpView,
    pub imap: Option<ImapView>,
    pub daily_limit: i32,
    pub min_interval_seconds: i32,
    pub jitter_seconds: i32,
    pub timezone: String,
    pub status: MailboxStatus,
    /// Why the status is `error` (what the server answered), or why the reputation guard
    /// paused it (e.g. `bounce rate 4/50 over 5%`).
    pub status_reason: Option<String>,
    /// While `error`: when the next automatic re-check runs (`null` until it is scheduled,
    /// within seconds of entering `error`).
    pub next_check_at: Option<DateTime<Utc>>,
    /// Automatic re-checks that failed since the mailbox entered `error`; each doubles the
    /// wait before the next.
    pub check_failures: i32,
    /// Hard-bounce rate over the latest 50 sends above which the mailbox is paused.
    pub max_bounce_rate: f64,
    /// Spam-complaint rate over the latest 200 sends above which the mailbox is paused.
    pub max_complaint_rate: f64,
    pub warmup: WarmupView,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CheckResult {
    pub ok: bool,
    /// What failed, when `ok` is false. Never contains the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Result<(), mail::CheckError>> for CheckResult {
    fn from(result: Result<(), mail::CheckError>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(error) => Self {
                ok: false,
                error: Some(error.message().to_owned()),
            },
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct VerifyResult {
    pub smtp: CheckResult,
    /// `null` when the mailbox has no IMAP settings.
    pub imap: Option<CheckResult>,
    /// The mailbox's status after the check.
    pub status: MailboxStatus,
    pub status_reason: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validation of each field given (cross-field rules that need the stored row are in `merge`)
// ---------------------------------------------------------------------------------------

fn check_email(checks: &mut Checks, value: &str) {
    checks.email("email", value.trim());
}

/// Stored trimmed; checked as given, so that the limit is the one the client sees.
fn check_from_name(checks: &mut Checks, value: &str) {
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
fn check_rates(checks: &mut Checks, max_bounce_rate: Option<f64>, max_complaint_rate: Option<f64>) {
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

fn check_limits(
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
fn check_hosts_reachable<'a>(
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

// ---------------------------------------------------------------------------------------
// From requests to rows and back
// ---------------------------------------------------------------------------------------

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

fn new_values(
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
fn merge(
    current: db::Mailbox,
    body: &UpdateMailbox,
    cipher: Option<&SecretCipher>,
) -> Result<MailboxValues, ApiError> {
    let id = current.id;
    let mut v = MailboxValues::from(current);
    let mut checks = Checks::default();
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

/// Sets `slot` to `value`; true when that changed it.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

fn port(value: i32) -> Result<u16, ApiError> {
    u16::try_from(value).map_err(ApiError::internal)
}

fn security(value: &str) -> Result<mail::Security, ApiError> {
    value
        .parse::<mail::Security>()
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))
}

impl TryFrom<db::Mailbox> for Mailbox {
    type Error = ApiError;

    fn try_from(m: db::Mailbox) -> Result<Self, ApiError> {
        let imap = match (m.imap_host, m.imap_port) {
            (Some(host), Some(imap_port)) => Some(ImapView {
                host,
                port: port(imap_port)?,
                security: security(m.imap_security.as_deref().unwrap_or("tls"))?.into(),
                username: m.imap_username,
                password_set: m.imap_password_encrypted.is_some(),
                watch: None,
            }),
            _ => None,
        };
        Ok(Self {
            id: m.id,
            email: m.email,
            from_name: m.display_name,
            smtp: SmtpView {
                host: m.smtp_host,
                port: port(m.smtp_port)?,
                security: security(&m.smtp_security)?.into(),
                username: m.smtp_username,
                password_set: m.smtp_password_encrypted.is_some(),
            },
            imap,
            daily_limit: m.daily_limit,
            min_interval_seconds: m.min_interval_seconds,
            jitter_seconds: m.max_jitter_seconds,
            timezone: m.timezone,
            status: MailboxStatus::parse(&m.status)?,
            status_reason: m.status_reason,
            next_check_at: m.next_check_at,
            check_failures: m.check_failures,
            max_bounce_rate: m.max_bounce_rate,
            max_complaint_rate: m.max_complaint_rate,
            warmup: WarmupView {
                enabled: m.warmup_enabled,
                start_limit: m.warmup_start_limit,
                daily_increase: m.warmup_daily_increase,
                started_on: m.warmup_started_on,
            },
            last_sent_at: m.last_sent_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

type ImapConnection = (
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// What the inbox watcher connects with.
fn imap_settings(m: &db::Mailbox) -> ImapConnection {
    (
        m.imap_host.clone(),
        m.imap_port,
        m.imap_security.clone(),
        m.imap_username.clone(),
        m.imap_password_encrypted.clone(),
    )
}

/// A second mailbox with the same address in the workspace is a 409.
fn duplicate_email(error: DieselError) -> ApiError {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(db::UNIQUE_EMAIL_CONSTRAINT) =>
        {
            ApiError::Conflict("a mailbox with this email already exists in the workspace".into())
        }
        _ => error.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

/// Connect a mailbox
///
/// Stores the SMTP (and optional IMAP) settings with the passwords encrypted, plus the daily
/// limit, spacing, timezone and warmup. 409 when the workspace already has a mailbox with
/// this email; 503 `encryption_not_configured` when a password is given to a server without
/// `security.encryption_keys`. A host given as an IP address that is not public (loopback,
/// private, link-local, ...) is a 422 naming the field: the platform does not connect to
/// private networks. Settings are not tried here: see `POST /mailboxes/{id}/verify`.
#[api_v2_operation(tags(Mailboxes))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateMailbox>,
) -> Result<CreatedJson<Mailbox>, ApiError> {
    let body = body.into_inner();
    check_hosts_reachable(
        &state.outbound,
        std::iter::once(("smtp.host", body.smtp.host.as_str())).chain(
            body.imap
                .as_ref()
                .map(|imap| ("imap.host", imap.host.as_str())),
        ),
    )?;
    let id = Uuid::now_v7();
    let values = new_values(id, &body, state.cipher.as_ref())?;
    let mut conn = state.pool.get().await?;
    let created = db::insert(
        &mut conn,
        &db::NewMailbox {
            id,
            workspace_id: caller.workspace_id,
            values,
        },
    )
    .await
    .map_err(duplicate_email)?;
    tracing::info!(workspace.id = %caller.workspace_id, mailbox.id = %id, "mailbox created");
    Ok(CreatedJson(created.try_into()?))
}

/// List mailboxes
///
/// The workspace's mailboxes in creation order, a page at a time (`limit`, `cursor`).
#[api_v2_operation(tags(Mailboxes))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListQuery>,
) -> Result<web::Json<Page<Mailbox>>, ApiError> {
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let rows = db::list(&mut conn, caller.workspace_id, page.after, page.fetch()).await?;
    let (rows, next_cursor) = page.finish(rows, |m| m.id);
    let mut data = rows
        .into_iter()
        .map(Mailbox::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    attach_watches(&mut conn, &mut data).await?;
    Ok(web::Json(Page { data, next_cursor }))
}

/// Get a mailbox
#[api_v2_operation(tags(Mailboxes))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Mailbox>, ApiError> {
    let mut conn = state.pool.get().await?;
    let mailbox = db::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("mailbox"))?;
    let mut mailbox: Mailbox = mailbox.try_into()?;
    attach_watches(&mut conn, std::slice::from_mut(&mut mailbox)).await?;
    Ok(web::Json(mailbox))
}

/// Update a mailbox
///
/// Partial update: omitted fields keep their values (an omitted password keeps the stored
/// one); `null` removes `from_name`, `imap` or `smtp.username` (with its password). Setting
/// `status` (active, paused, disabled) clears `status_reason`; changing any SMTP or IMAP
/// setting of a mailbox in `error` makes it `active` again. `{"status": "active"}` resumes a
/// paused mailbox, also one the reputation guard paused (`max_bounce_rate`,
/// `max_complaint_rate`): its messages that waited are sent.
#[api_v2_operation(tags(Mailboxes))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<UpdateMailbox>,
) -> Result<web::Json<Mailbox>, ApiError> {
    let body = body.into_inner();
    let smtp_host = body.smtp.as_ref().and_then(|smtp| smtp.host.as_deref());
    let imap_host = match &body.imap {
        Some(Some(imap)) => imap.host.as_deref(),
        _ => None,
    };
    check_hosts_reachable(
        &state.outbound,
        [("smtp.host", smtp_host), ("imap.host", imap_host)]
            .into_iter()
            .filter_map(|(field, host)| Some((field, host?))),
    )?;
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    let cipher = state.cipher.as_ref();
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction(async |tx| -> Result<db::Mailbox, ApiError> {
            let current = db::find_for_update(tx, workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("mailbox"))?;
            let imap_before = imap_settings(&current);
            let values = merge(current, &body, cipher)?;
            let updated = db::update(tx, workspace_id, id, &values)
                .await
                .map_err(duplicate_email)?
                .ok_or(ApiError::NotFound("mailbox"))?;
            if imap_settings(&updated) != imap_before {
                // The watcher holding the old settings stops, and the mailbox is read afresh
                // (by date: answers already recorded are not recorded again).
                inbox::forget(tx, id).await?;
            }
            Ok(updated)
        })
        .await?;
    tracing::info!(workspace.id = %workspace_id, mailbox.id = %id, "mailbox updated");
    let mut mailbox: Mailbox = updated.try_into()?;
    attach_watches(&mut conn, std::slice::from_mut(&mut mailbox)).await?;
    Ok(web::Json(mailbox))
}

/// Delete a mailbox
///
/// Removes the mailbox and its encrypted credentials; enrollments that used it pick another
/// mailbox of their sequence. 409 once messages were sent or queued from it (deleting would
/// erase their history): set `status` to `disabled` instead.
#[api_v2_operation(tags(Mailboxes))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    match db::delete(&mut conn, caller.workspace_id, id).await? {
        db::Deleted::Yes => {
            tracing::info!(workspace.id = %caller.workspace_id, mailbox.id = %id, "mailbox deleted");
            Ok(NoContent)
        }
        db::Deleted::NotFound => Err(ApiError::NotFound("mailbox")),
        db::Deleted::HasMessages => Err(ApiError::Conflict(
            "messages were sent from this mailbox; set its status to `disabled` instead of \
             deleting it, so their history stays"
                .into(),
        )),
    }
}

/// Verify a mailbox
///
/// Tries the stored settings: SMTP (connect with the configured security, EHLO, AUTH when a
/// username is set) and, when configured, IMAP (connect, LOGIN), each within 10 s. Always
/// 200 with the outcome of each; a failure message never contains the password. A host that
/// resolves to an address that is not public is not connected to: its check fails with
/// `refused: resolves to a private address`. A failure moves an `active` mailbox to `error`
/// (with `status_reason`); a success moves an `error` mailbox back to `active`; `paused` and
/// `disabled` stay as they are. A mailbox in `error` is also re-checked automatically, with a
/// growing wait (`next_check_at`, `check_failures`); a verify starts that schedule over.
#[api_v2_operation(tags(Mailboxes))]
async fn verify(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<VerifyResult>, ApiError> {
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    // No pooled connection is held while talking to the mail servers.
    let mailbox = {
        let mut conn = state.pool.get().await?;
        db::find(&mut conn, workspace_id, id)
            .await?
            .ok_or(ApiError::NotFound("mailbox"))?
    };
    let check = mail::mailbox_check::check_mailbox(
        &state.outbound,
        state.cipher.as_ref(),
        &mailbox,
        mail::CHECK_TIMEOUT,
    )
    .await
    .map_err(|error| match error {
        CheckSetupError::NoEncryptionKeys => ApiError::EncryptionUnavailable,
        CheckSetupError::Undecryptable { .. } => {
            ApiError::Conflict(format!("{error}; set it again with PUT"))
        }
        CheckSetupError::Invalid(_) => ApiError::internal(error),
    })?;
    let failure = check.failure();

    let mut conn = state.pool.get().await?;
    let after = db::record_check(
        &mut conn,
        workspace_id,
        id,
        mailbox.updated_at,
        failure.as_deref(),
    )
    .await?
    .ok_or(ApiError::NotFound("mailbox"))?;
    tracing::info!(
        workspace.id = %workspace_id,
        mailbox.id = %id,
        smtp_ok = check.smtp.is_ok(),
        imap_ok = check.imap.as_ref().map(Result::is_ok),
        status = %after.status,
        "mailbox verified"
    );
    Ok(web::Json(VerifyResult {
        smtp: check.smtp.into(),
        imap: check.imap.map(CheckResult::from),
        status: MailboxStatus::parse(&after.status)?,
        status_reason: after.status_reason,
    }))
}
