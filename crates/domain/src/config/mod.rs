//! Configuration of every service: embedded defaults, then a TOML/YAML file, then `SEQ_*`
//! environment variables, then `DATABASE_URL` / `KAFKA_BROKERS`. Validated after extraction;
//! every error names the key and the place its value came from.

mod deprecated;
mod env_alias;
mod oauth;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml, Yaml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use oauth::{OAuthConfig, OAuthProviderConfig, OAuthProvidersConfig, TENANT_PLACEHOLDER};
pub use validate::ConfigError;

/// The defaults file, compiled in so a binary runs with no file at all.
pub const DEFAULTS_TOML: &str = include_str!("../../config/default.toml");
/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "SEQ_";
/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "SEQ_CONFIG";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
    pub api: ApiConfig,
    pub tracker: TrackerConfig,
    pub scheduler: SchedulerConfig,
    pub outbox: OutboxConfig,
    pub sender_worker: WorkerServiceConfig,
    pub inbox_watcher: InboxWatcherConfig,
    pub webhooks: WebhooksConfig,
    pub security: SecurityConfig,
    pub oauth: OAuthConfig,
    pub shutdown: ShutdownConfig,
    /// Settings given under a deprecated name, one warning each, logged once telemetry runs.
    #[serde(skip)]
    pub deprecations: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: usize,
    pub acquire_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// The planner's cost of a random page read in this process's sessions (PostgreSQL's
    /// `random_page_cost`).
    pub random_page_cost: f64,
}

impl DatabaseConfig {
    /// The URL with any password replaced, safe for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic_prefix: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub request_timeout_ms: u64,
    /// How producers compress record batches.
    pub compression: Compression,
    pub topics: TopicsConfig,
}

/// A Kafka producer's `compression.type` (the codecs our librdkafka build has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub email_jobs: String,
    pub followup_events: String,
    pub email_retries: String,
    pub email_events: String,
    pub mailbox_events: String,
    pub webhook_events: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    pub otlp_endpoint: String,
}

impl TelemetryConfig {
    pub fn otlp_endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.trim()).filter(|e| !e.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    pub bind: SocketAddr,
    /// Public base URL of the tracker that tracking and unsubscribe links point to, unless a
    /// sequence has a tracking domain of its own.
    pub public_url: String,
    /// How much of the client address events keep.
    pub client_ip: ClientIpPolicy,
    /// CIDR ranges of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Case-insensitive substrings of user agents of mail proxies, scanners and bots.
    pub bot_user_agents: Vec<String>,
    /// CIDR ranges whose requests are bots (mail privacy proxies, link scanners).
    pub bot_ip_ranges: Vec<String>,
    /// Opens and clicks sooner than this after the email was sent are bots.
    pub min_seconds_after_send: u64,
    /// Message ids of recent opens remembered per replica, to tell a click without an open.
    pub recent_opens_capacity: u64,
}

impl TrackerConfig {
    /// `tracker.trusted_proxies` parsed (validation already checked they parse).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        parse_nets(&self.trusted_proxies)
    }

    /// `tracker.bot_ip_ranges` parsed (validation already checked they parse).
    pub fn bot_ip_nets(&self) -> Vec<ipnet::IpNet> {
        parse_nets(&self.bot_ip_ranges)
    }
}

fn parse_nets(entries: &[String]) -> Vec<ipnet::IpNet> {
    entries
        .iter()
        .filter_map(|e| e.trim().parse().ok())
        .collect()
}

/// What events keep of a tracker client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIpPolicy {
    /// IPv4 to its /24, IPv6 to its /48.
    Truncate,
    /// HMAC-SHA256 of the address with the first tracking key, first 16 bytes in hex.
    Hash,
    Full,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    pub admin_token: SecretString,
    pub max_body_bytes: usize,
    pub max_import_bytes: usize,
    /// Longest request target (path and query) accepted; longer ones answer 414.
    pub max_uri_bytes: usize,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerServiceConfig {
    pub admin_bind: SocketAddr,
    /// Jobs claimed from the database in one statement.
    pub batch_size: u32,
    /// How long a batch may wait to fill once its first job arrived.
    pub batch_wait_ms: u64,
    /// Jobs read from Kafka and not yet finished, per worker (back-pressure on the consumer).
    pub max_in_flight: u32,
    /// SMTP connections one worker keeps open to one mailbox's server at most.
    pub connections_per_mailbox: u32,
    /// Emails sent over one SMTP connection before it is closed and a new one opened.
    pub messages_per_connection: u32,
    /// Connecting, greeting, TLS and AUTH together.
    pub connect_timeout_ms: u64,
    /// Each of MAIL FROM, RCPT TO and DATA.
    pub command_timeout_ms: u64,
    /// Waiting for the server's reply after the message's final dot (RFC 5321 suggests 10
    /// minutes); no reply in time leaves the message `unknown`, never resent.
    pub data_timeout_ms: u64,
    /// An unused pooled connection is closed after this long.
    pub idle_timeout_ms: u64,
    /// How long a claimed message belongs to its worker. A message still `sending` after its
    /// lease (its worker died mid-send) is marked `unknown`. Must exceed the SMTP timeouts.
    pub lease_seconds: u64,
    /// How often a worker looks for messages whose lease expired, and for mailboxes in
    /// `error` due for an automatic re-check.
    pub reaper_interval_ms: u64,
    /// A mailbox that enters `error` is re-checked automatically this long after; each failed
    /// re-check doubles the wait, up to `mailbox_recheck_max_seconds`.
    pub mailbox_recheck_initial_seconds: u64,
    pub mailbox_recheck_max_seconds: u64,
    /// DKIM keys by signing domain: an email whose From domain has a key is signed.
    pub dkim: Vec<DkimKeyConfig>,
    /// The name SMTP's EHLO gives (a FQDN or an address literal); empty: the host's FQDN,
    /// else the address literal of each connection (`crate::mail::hello`).
    pub hello_name: String,
}

impl WorkerServiceConfig {
    /// The configured EHLO name, `None` when empty.
    pub fn hello_name(&self) -> Option<&str> {
        Some(self.hello_name.trim()).filter(|name| !name.is_empty())
    }

    /// The longest a healthy send can hold its message: connect, three commands, the data.
    pub fn longest_send_ms(&self) -> u64 {
        self.connect_timeout_ms
            .saturating_add(self.command_timeout_ms.saturating_mul(3))
            .saturating_add(self.data_timeout_ms)
    }
}

/// One DKIM key: `private_key` (PEM, secret) or `private_key_file` (a path to the PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The `d=` domain; emails from this domain (exactly) are signed.
    pub domain: String,
    /// The `s=` selector: the public key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    #[serde(default)]
    pub private_key: Option<SecretString>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DkimAlgorithm {
    /// rsa-sha256 with a PKCS#1 or PKCS#8 RSA key.
    #[default]
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

/// The inbox watcher (`crates/inbox-watcher`): reads connected mailboxes over IMAP for
/// replies, automatic answers and bounces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxWatcherConfig {
    pub admin_bind: SocketAddr,
    /// The folder incoming mail arrives in (watched with IDLE where offered).
    pub folder: String,
    /// The folders read in every mailbox, instead of discovering them (`folder` and the
    /// server's Junk folder); empty means discover. See the inbox watcher's `folders` module.
    pub folders: Vec<String>,
    /// How long a replica's claim on a mailbox lasts without renewal; after it, another
    /// replica takes the mailbox over.
    pub lease_seconds: u64,
    /// How often leases are renewed and unwatched mailboxes claimed (at most a third of the
    /// lease, so two renewals may fail before the lease is lost).
    pub claim_interval_ms: u64,
    /// Mailboxes one replica watches at most (each holds one IMAP connection).
    pub max_mailboxes: u32,
    /// Mailboxes claimed per round, so a replica starting next to others does not take them all.
    pub claims_per_round: u32,
    /// Wait with IMAP IDLE where the server offers it; otherwise (or when false) poll.
    pub use_idle: bool,
    /// IDLE is re-issued after this long (RFC 2177: servers may drop it after 30 minutes).
    pub idle_timeout_seconds: u64,
    /// Pause between checks of a mailbox without IDLE.
    pub poll_interval_ms: u64,
    /// Messages fetched per IMAP command and recorded per transaction.
    pub fetch_batch: u32,
    /// Bytes of each message fetched at most (headers come first; a reply needs only them,
    /// a bounce report its first parts).
    pub max_message_bytes: u32,
    /// A mailbox read for the first time is read back to its first sent email, at most this
    /// many days.
    pub first_scan_days: u32,
    /// Connecting, greeting, TLS and login together.
    pub connect_timeout_ms: u64,
    /// Each IMAP command.
    pub command_timeout_ms: u64,
    /// First wait after a failed connection; it doubles per failure up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

/// The webhooks service (`crates/webhooks`): delivers recorded events to the endpoints
/// workspaces registered, signed to the Standard Webhooks specification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub admin_bind: SocketAddr,
    /// Waits before the second, third... attempt of a delivery that failed; after the last
    /// one fails the delivery is `failed`.
    pub retry_schedule_seconds: Vec<u64>,
    /// An attempt answered with 2xx within this long succeeded; anything else failed.
    pub request_timeout_ms: u64,
    /// Requests in flight to one endpoint at most. Events of one enrollment go one after
    /// another (the same lane), in the order they were recorded.
    pub concurrency_per_endpoint: u32,
    /// Deliveries waiting in memory per endpoint; more wait in PostgreSQL for the next poll.
    pub queue_per_endpoint: u32,
    /// A replica's claim on a delivery it is about to send; after it another replica (or a
    /// poll) may send it again.
    pub lease_seconds: u64,
    /// Pause between looks for due deliveries (retries, API tests, retries and replays).
    pub poll_interval_ms: u64,
    /// Deliveries claimed per poll.
    pub poll_batch: u32,
    /// Events fanned out per transaction, and how long to wait to fill a batch.
    pub fanout_batch: u32,
    pub fanout_wait_ms: u64,
    /// Attempt results recorded per transaction, and how long to wait to fill a batch.
    pub record_batch: u32,
    pub record_wait_ms: u64,
    /// An endpoint every attempt to which has failed for this long is disabled.
    pub disable_after_failing_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub admin_bind: SocketAddr,
    /// Pause between dispatch rounds that found nothing due.
    pub poll_interval_ms: u64,
    /// Enrollments (or retries) claimed per dispatch transaction.
    pub batch_size: u32,
    /// Dispatch loops per replica, each with its own connection.
    pub dispatch_concurrency: u32,
    /// Wait before each retry of a transiently failed send; its length is the number of retries.
    pub retry_backoff_seconds: Vec<u64>,
    /// Deprecated name of `outbox.batch_size`, honoured while that key is not set.
    #[serde(default)]
    pub outbox_batch_size: Option<u32>,
    /// Deprecated name of `outbox.poll_interval_ms`, honoured while that key is not set.
    #[serde(default)]
    pub outbox_poll_interval_ms: Option<u64>,
}

/// The outbox relay that every service writing Kafka records through the outbox runs (the
/// scheduler, the sender worker and the inbox watcher).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Outbox rows published per relay transaction.
    pub batch_size: u32,
    /// Pause between relay rounds that found nothing pending.
    pub poll_interval_ms: u64,
    /// How long published rows are kept (for debugging); 0 deletes each row in the
    /// transaction that saw Kafka acknowledge it.
    pub retention_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub encryption_keys: SecretString,
    /// Keys that sign tracking and unsubscribe tokens: base64 entries, comma separated, the
    /// first signs and all verify.
    pub tracking_keys: SecretString,
    /// CIDR ranges of non-public addresses that connections made on a tenant's behalf may
    /// reach anyway (say, the site's own mail relay); everything else that is not public is
    /// refused (`domain::outbound`).
    pub allowed_private_networks: Vec<String>,
}

impl SecurityConfig {
    /// The guard of outbound connections made on a tenant's behalf, allowing
    /// `security.allowed_private_networks` (validation already checked they parse).
    pub fn outbound_guard(&self) -> crate::outbound::OutboundGuard {
        crate::outbound::OutboundGuard::new(parse_nets(&self.allowed_private_networks))
    }

    /// The cipher for secrets at rest; an error when no key is configured.
    pub fn cipher(&self) -> Result<crate::crypto::SecretCipher, crate::crypto::CryptoError> {
        crate::crypto::SecretCipher::from_spec(&self.encryption_keys)
    }

    /// The signer of tracking tokens; `Ok(None)` when no key is configured.
    pub fn token_signer(&self) -> Result<Option<crate::tracking_token::TokenSigner>, String> {
        use base64::Engine as _;
        let spec = self.tracking_keys.expose_secret().trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for (position, entry) in spec.split(',').enumerate() {
            let key = base64::engine::general_purpose::STANDARD
                .decode(entry.trim())
                .map_err(|_| format!("entry {} is not valid base64", position + 1))?;
            keys.push(key);
        }
        let (primary, older) = keys.split_first().ok_or("no key given")?;
        let older: Vec<&[u8]> = older.iter().map(Vec::as_slice).collect();
        crate::tracking_token::TokenSigner::with_keys(primary, &older)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_period_seconds: u64,
}

impl Config {
    /// Loads from the standard sources. `file` wins over `SEQ_CONFIG`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        Self::from_figment(&figment(file.as_deref())?)
    }

    /// Extracts and validates; separate from [`figment`] so tests can layer their own values.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        deprecated::apply(&mut config, figment)?;
        validate::validate(&config, figment)?;
        Ok(config)
    }
}

/// The layered sources, without extraction.
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.to_path_buf()));
        }
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        figment = if is_yaml {
            figment.merge(Yaml::file_exact(path))
        } else {
            figment.merge(Toml::file_exact(path))
        };
    }
    Ok(figment
        .merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"))
        .merge(env_alias::EnvAlias::new("DATABASE_URL", "database.url"))
        .merge(env_alias::EnvAlias::new("KAFKA_BROKERS", "kafka.brokers")))
}

fn redact_url(url: &str) -> String {
    // scheme://user:password@host/... -> scheme://user:***@host/...
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[cfg(test)]
mod tests;
