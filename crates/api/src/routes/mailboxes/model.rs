//! Request and response shapes of mailboxes, their limits and defaults, and the view of a
//! stored row.

use chrono::{DateTime, NaiveDate, Utc};
use domain::db::mailbox_oauth::MailboxOAuth;
use domain::db::mailboxes::{self as db, status};
use domain::mail;
use paperclip::actix::Apiv2Schema;
use paperclip::v2::models::{DataType, DataTypeFormat};
use paperclip::v2::schema::TypedData;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub(super) const DEFAULT_DAILY_LIMIT: i32 = 30;
pub(crate) const MAX_DAILY_LIMIT: i64 = 10_000;
pub(super) const DEFAULT_MIN_INTERVAL_SECONDS: i32 = 120;
pub(super) const DEFAULT_JITTER_SECONDS: i32 = 60;
/// A day: spacing beyond that is a typo, not a sending strategy.
pub(crate) const MAX_SPACING_SECONDS: i64 = 86_400;
/// Longest `from_name`, SMTP/IMAP username and password, in characters.
pub(crate) const MAX_FROM_NAME_LEN: usize = 200;
pub(crate) const MAX_USERNAME_LEN: usize = 320;
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;
pub(super) const DEFAULT_WARMUP_START_LIMIT: i32 = 5;
pub(super) const DEFAULT_WARMUP_DAILY_INCREASE: i32 = 2;
pub(super) const DEFAULT_TIMEZONE: &str = "UTC";
/// The reputation guard's defaults: 5 % hard bounces over the last 50 sends, 0.3 % spam
/// complaints over the last 200 (the line Gmail's sender guidelines draw).
pub(super) const DEFAULT_MAX_BOUNCE_RATE: f64 = 0.05;
pub(super) const DEFAULT_MAX_COMPLAINT_RATE: f64 = 0.003;

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
    pub(super) fn as_str(self) -> &'static str {
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
/// passes. `reconnect_required`: the OAuth provider no longer accepts the mailbox's grant
/// (revoked, password changed); only `POST /mailboxes/{id}/oauth/reconnect` makes it
/// `active` again. Messages of a mailbox that cannot send wait; none is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Apiv2Schema)]
#[serde(rename_all = "snake_case")]
pub enum MailboxStatus {
    Active,
    Paused,
    Error,
    Disabled,
    ReconnectRequired,
}

impl MailboxStatus {
    pub(super) fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            status::ACTIVE => Ok(Self::Active),
            status::PAUSED => Ok(Self::Paused),
            status::ERROR => Ok(Self::Error),
            status::DISABLED => Ok(Self::Disabled),
            status::RECONNECT_REQUIRED => Ok(Self::ReconnectRequired),
            other => Err(ApiError::internal(anyhow::anyhow!(
                "mailbox status `{other}` is unknown"
            ))),
        }
    }
}

/// A password: write-only. Never returned, never logged (`Debug` prints `[REDACTED]`).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Password(pub(super) SecretString);

impl TypedData for Password {
    fn data_type() -> DataType {
        DataType::String
    }

    fn format() -> Option<DataTypeFormat> {
        Some(DataTypeFormat::Password)
    }
}

impl Password {
    pub(super) fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
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

#[derive(Debug, Default, Serialize, Deserialize, Apiv2Schema)]
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
    #[serde(default, deserialize_with = "crate::extract::nullable")]
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
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    pub from_name: Option<Option<String>>,
    /// Fields given replace the stored ones.
    pub smtp: Option<SmtpUpdate>,
    /// `null` removes IMAP settings. Adding them requires every field; changing them, only
    /// the fields that change.
    #[serde(default, deserialize_with = "crate::extract::nullable")]
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

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WarmupView {
    pub enabled: bool,
    pub start_limit: i32,
    pub daily_increase: i32,
    /// The first day of the ramp (in the mailbox's timezone); set while enabled.
    pub started_on: Option<NaiveDate>,
}

/// How a mailbox logs in to its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Apiv2Schema)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// The SMTP and IMAP passwords stored with the mailbox.
    Password,
    /// XOAUTH2 with an access token of the account connected through Google or Microsoft.
    Oauth2,
}

/// Whether the OAuth grant is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Apiv2Schema)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    Connected,
    /// The provider refused the grant: reconnect the mailbox.
    ReconnectRequired,
}

/// A mailbox's authentication; never a password or token.
#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct MailboxAuth {
    #[serde(rename = "type")]
    pub kind: AuthType,
    /// `google` or `microsoft`; `null` for a password mailbox.
    pub provider: Option<String>,
    /// The account the grant is for (the SMTP and IMAP user); `null` for a password mailbox.
    pub connected_email: Option<String>,
    /// `null` for a password mailbox.
    pub status: Option<AuthStatus>,
}

impl MailboxAuth {
    pub(super) fn password() -> Self {
        Self {
            kind: AuthType::Password,
            provider: None,
            connected_email: None,
            status: None,
        }
    }

    pub(super) fn oauth2(grant: &MailboxOAuth, mailbox_status: MailboxStatus) -> Self {
        let status = if mailbox_status == MailboxStatus::ReconnectRequired {
            AuthStatus::ReconnectRequired
        } else {
            AuthStatus::Connected
        };
        Self {
            kind: AuthType::Oauth2,
            provider: Some(grant.provider.clone()),
            connected_email: Some(grant.connected_email.clone()),
            status: Some(status),
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Mailbox {
    pub id: Uuid,
    pub email: String,
    /// `password`, or `oauth2` for a mailbox connected with Google or Microsoft (whose SMTP
    /// and IMAP settings are the provider's, with no password).
    pub auth: MailboxAuth,
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
            auth: MailboxAuth::password(),
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
