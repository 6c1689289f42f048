//! Checks serde cannot express, reported with the key and where its value came from.

use std::path::PathBuf;

use figment::Figment;
use secrecy::ExposeSecret;

use super::{Config, OAuthConfig, TENANT_PLACEHOLDER};
use crate::mail::Security;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Parse or type errors; figment's message already names the key and its source.
    #[error("invalid configuration: {0}")]
    Extract(String),
    #[error("invalid configuration: `{key}` (from {source_name}): {message}")]
    Invalid {
        key: String,
        source_name: String,
        message: String,
    },
}

impl ConfigError {
    pub(super) fn from_figment(error: figment::Error) -> Self {
        // One line per error, each naming the key and its source in our own terms (figment's
        // own text shows env keys upper-cased and the prefix instead of the variable).
        let messages: Vec<String> = error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".").to_ascii_lowercase();
                let source = e
                    .metadata
                    .as_ref()
                    .map_or_else(|| "built-in defaults".to_owned(), |m| source_name(m, &key));
                if key.is_empty() {
                    format!("{} (from {source})", e.kind)
                } else {
                    format!("`{key}` (from {source}): {}", e.kind)
                }
            })
            .collect();
        ConfigError::Extract(messages.join("; "))
    }

    /// The dotted key this error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

pub(super) fn validate(config: &Config, figment: &Figment) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            source_name: source_of(figment, key),
            message,
        })
    };

    let url = config.database.url.expose_secret();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return fail(
            "database.url",
            "must be a postgres:// or postgresql:// URL".to_owned(),
        );
    }
    if config.database.max_connections == 0 {
        return fail("database.max_connections", "must be at least 1".to_owned());
    }
    let cost = config.database.random_page_cost;
    if !(cost.is_finite() && cost > 0.0 && cost <= 1000.0) {
        return fail(
            "database.random_page_cost",
            format!("must be a number above 0 and at most 1000, not {cost}"),
        );
    }
    for (key, value) in [
        (
            "database.acquire_timeout_ms",
            config.database.acquire_timeout_ms,
        ),
        (
            "database.connect_timeout_ms",
            config.database.connect_timeout_ms,
        ),
        ("kafka.request_timeout_ms", config.kafka.request_timeout_ms),
        (
            "scheduler.poll_interval_ms",
            config.scheduler.poll_interval_ms,
        ),
        ("outbox.poll_interval_ms", config.outbox.poll_interval_ms),
        (
            "scheduler.batch_size",
            u64::from(config.scheduler.batch_size),
        ),
        (
            "scheduler.dispatch_concurrency",
            u64::from(config.scheduler.dispatch_concurrency),
        ),
        ("outbox.batch_size", u64::from(config.outbox.batch_size)),
        (
            "sender_worker.batch_size",
            u64::from(config.sender_worker.batch_size),
        ),
        (
            "sender_worker.max_in_flight",
            u64::from(config.sender_worker.max_in_flight),
        ),
        (
            "sender_worker.connections_per_mailbox",
            u64::from(config.sender_worker.connections_per_mailbox),
        ),
        (
            "sender_worker.messages_per_connection",
            u64::from(config.sender_worker.messages_per_connection),
        ),
        (
            "sender_worker.connect_timeout_ms",
            config.sender_worker.connect_timeout_ms,
        ),
        (
            "sender_worker.command_timeout_ms",
            config.sender_worker.command_timeout_ms,
        ),
        (
            "sender_worker.data_timeout_ms",
            config.sender_worker.data_timeout_ms,
        ),
        (
            "sender_worker.idle_timeout_ms",
            config.sender_worker.idle_timeout_ms,
        ),
        (
            "sender_worker.reaper_interval_ms",
            config.sender_worker.reaper_interval_ms,
        ),
        (
            "sender_worker.mailbox_recheck_initial_seconds",
            config.sender_worker.mailbox_recheck_initial_seconds,
        ),
        (
            "inbox_watcher.lease_seconds",
            config.inbox_watcher.lease_seconds,
        ),
        (
            "inbox_watcher.claim_interval_ms",
            config.inbox_watcher.claim_interval_ms,
        ),
        (
            "inbox_watcher.max_mailboxes",
            u64::from(config.inbox_watcher.max_mailboxes),
        ),
        (
            "inbox_watcher.claims_per_round",
            u64::from(config.inbox_watcher.claims_per_round),
        ),
        (
            "inbox_watcher.idle_timeout_seconds",
            config.inbox_watcher.idle_timeout_seconds,
        ),
        (
            "inbox_watcher.poll_interval_ms",
            config.inbox_watcher.poll_interval_ms,
        ),
        (
            "inbox_watcher.fetch_batch",
            u64::from(config.inbox_watcher.fetch_batch),
        ),
        (
            "inbox_watcher.max_message_bytes",
            u64::from(config.inbox_watcher.max_message_bytes),
        ),
        (
            "inbox_watcher.connect_timeout_ms",
            config.inbox_watcher.connect_timeout_ms,
        ),
        (
            "inbox_watcher.command_timeout_ms",
            config.inbox_watcher.command_timeout_ms,
        ),
        (
            "inbox_watcher.backoff_initial_ms",
            config.inbox_watcher.backoff_initial_ms,
        ),
        ("oauth.state_ttl_seconds", config.oauth.state_ttl_seconds),
        (
            "webhooks.request_timeout_ms",
            config.webhooks.request_timeout_ms,
        ),
        (
            "webhooks.concurrency_per_endpoint",
            u64::from(config.webhooks.concurrency_per_endpoint),
        ),
        (
            "webhooks.queue_per_endpoint",
            u64::from(config.webhooks.queue_per_endpoint),
        ),
        (
            "webhooks.poll_interval_ms",
            config.webhooks.poll_interval_ms,
        ),
        ("webhooks.poll_batch", u64::from(config.webhooks.poll_batch)),
        (
            "webhooks.fanout_batch",
            u64::from(config.webhooks.fanout_batch),
        ),
        (
            "webhooks.record_batch",
            u64::from(config.webhooks.record_batch),
        ),
        (
            "webhooks.disable_after_failing_hours",
            config.webhooks.disable_after_failing_hours,
        ),
    ] {
        if value == 0 {
            return fail(key, "must be greater than 0".to_owned());
        }
    }
    if config.scheduler.batch_size > 10_000 || config.outbox.batch_size > 10_000 {
        let key = if config.scheduler.batch_size > 10_000 {
            "scheduler.batch_size"
        } else {
            "outbox.batch_size"
        };
        return fail(key, "must be at most 10000".to_owned());
    }
    if config.sender_worker.batch_size > 10_000 {
        return fail(
            "sender_worker.batch_size",
            "must be at most 10000".to_owned(),
        );
    }
    let longest_send_ms = config.sender_worker.longest_send_ms();
    if config.sender_worker.lease_seconds.saturating_mul(1000) <= longest_send_ms {
        return fail(
            "sender_worker.lease_seconds",
            format!(
                "must exceed connect_timeout_ms + 3 x command_timeout_ms + data_timeout_ms \
                 ({} s), or a slow but live send would be declared unknown",
                longest_send_ms.div_ceil(1000)
            ),
        );
    }
    if config.sender_worker.mailbox_recheck_max_seconds
        < config.sender_worker.mailbox_recheck_initial_seconds
    {
        return fail(
            "sender_worker.mailbox_recheck_max_seconds",
            "must be at least sender_worker.mailbox_recheck_initial_seconds".to_owned(),
        );
    }
    let webhooks = &config.webhooks;
    if webhooks.lease_seconds.saturating_mul(1000) <= webhooks.request_timeout_ms.saturating_mul(2)
    {
        return fail(
            "webhooks.lease_seconds",
            "must exceed twice webhooks.request_timeout_ms, or a delivery could be sent again \
             while its first attempt is still waiting for an answer"
                .to_owned(),
        );
    }
    if webhooks.retry_schedule_seconds.len() > 100 {
        return fail(
            "webhooks.retry_schedule_seconds",
            "must list at most 100 waits".to_owned(),
        );
    }
    if webhooks.concurrency_per_endpoint > 256 {
        return fail(
            "webhooks.concurrency_per_endpoint",
            "must be at most 256".to_owned(),
        );
    }
    let watcher = &config.inbox_watcher;
    if watcher.claim_interval_ms.saturating_mul(3) > watcher.lease_seconds.saturating_mul(1000) {
        return fail(
            "inbox_watcher.claim_interval_ms",
            "must be at most a third of inbox_watcher.lease_seconds, or a lease could lapse \
             between two renewals"
                .to_owned(),
        );
    }
    if watcher.idle_timeout_seconds > 29 * 60 {
        return fail(
            "inbox_watcher.idle_timeout_seconds",
            "must be at most 1740 (29 minutes): servers may end an IDLE after 30 (RFC 2177)"
                .to_owned(),
        );
    }
    if watcher.backoff_max_ms < watcher.backoff_initial_ms {
        return fail(
            "inbox_watcher.backoff_max_ms",
            "must be at least inbox_watcher.backoff_initial_ms".to_owned(),
        );
    }
    if watcher.fetch_batch > 1000 {
        return fail(
            "inbox_watcher.fetch_batch",
            "must be at most 1000".to_owned(),
        );
    }
    if watcher.folder.trim().is_empty() {
        return fail("inbox_watcher.folder", "must name a folder".to_owned());
    }
    for (index, folder) in watcher.folders.iter().enumerate() {
        let key = "inbox_watcher.folders";
        if folder.trim().is_empty() {
            return fail(key, format!("entry {index} must name a folder"));
        }
        if folder.chars().any(char::is_control) {
            return fail(key, format!("entry {index} contains a control character"));
        }
        if watcher.folders[..index].contains(folder) {
            return fail(key, format!("`{folder}` is listed twice"));
        }
    }
    for (index, key) in config.sender_worker.dkim.iter().enumerate() {
        let at = format!("sender_worker.dkim[{index}]");
        if key.domain.trim().is_empty() || key.selector.trim().is_empty() {
            return fail(&at, "needs a domain and a selector".to_owned());
        }
        if key.private_key.is_some() == key.private_key_file.is_some() {
            return fail(
                &at,
                "needs exactly one of private_key and private_key_file".to_owned(),
            );
        }
    }
    if let Some(name) = config.sender_worker.hello_name()
        && let Err(message) = crate::mail::hello::parse(name)
    {
        return fail("sender_worker.hello_name", message);
    }
    if config.scheduler.retry_backoff_seconds.contains(&0) {
        return fail(
            "scheduler.retry_backoff_seconds",
            "every wait must be at least 1 second (an empty list disables retries)".to_owned(),
        );
    }
    if config.kafka.brokers.split(',').all(|b| b.trim().is_empty()) {
        return fail(
            "kafka.brokers",
            "must name at least one host:port".to_owned(),
        );
    }
    if config.kafka.partitions < 1 {
        return fail("kafka.partitions", "must be at least 1".to_owned());
    }
    if config.kafka.replication_factor < 1 {
        return fail("kafka.replication_factor", "must be at least 1".to_owned());
    }
    if !is_topic_safe(&config.kafka.topic_prefix, true) {
        return fail(
            "kafka.topic_prefix",
            "may contain only ASCII letters, digits, '.', '_' and '-'".to_owned(),
        );
    }
    let topics = &config.kafka.topics;
    for (key, name) in [
        ("kafka.topics.email_jobs", &topics.email_jobs),
        ("kafka.topics.followup_events", &topics.followup_events),
        ("kafka.topics.email_retries", &topics.email_retries),
        ("kafka.topics.email_events", &topics.email_events),
        ("kafka.topics.mailbox_events", &topics.mailbox_events),
        ("kafka.topics.webhook_events", &topics.webhook_events),
    ] {
        if !is_topic_safe(name, false) || name.len() + config.kafka.topic_prefix.len() > 249 {
            return fail(
                key,
                "must be 1 to 249 characters (with the prefix) of ASCII letters, digits, '.', '_' and '-'"
                    .to_owned(),
            );
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.telemetry.log_filter) {
        return fail("telemetry.log_filter", format!("not a valid filter: {e}"));
    }
    if !(256..=65_534).contains(&config.api.max_uri_bytes) {
        return fail(
            "api.max_uri_bytes",
            "must be between 256 and 65534 (the longest URI the HTTP layer parses)".to_owned(),
        );
    }
    let admin_token = config.api.admin_token.expose_secret();
    if !admin_token.is_empty() && admin_token.len() < 24 {
        return fail(
            "api.admin_token",
            "must be at least 24 characters (or empty to disable workspace creation)".to_owned(),
        );
    }
    // Empty is allowed here (services that need a key refuse to start without one), but a
    // key that is set must be usable.
    match config.security.cipher() {
        Ok(_) | Err(crate::crypto::CryptoError::NotConfigured) => {}
        Err(error) => return fail("security.encryption_keys", error.to_string()),
    }
    if let Err(message) = config.security.token_signer() {
        return fail("security.tracking_keys", message);
    }
    if !is_http_url(config.tracker.public_url.trim()) {
        return fail(
            "tracker.public_url",
            "must be an http:// or https:// URL (the base of tracking and unsubscribe links)"
                .to_owned(),
        );
    }
    for (key, entries) in [
        ("tracker.trusted_proxies", &config.tracker.trusted_proxies),
        ("tracker.bot_ip_ranges", &config.tracker.bot_ip_ranges),
        (
            "security.allowed_private_networks",
            &config.security.allowed_private_networks,
        ),
    ] {
        for entry in entries {
            if let Err(e) = entry.trim().parse::<ipnet::IpNet>() {
                return fail(
                    key,
                    format!("`{entry}` is not a CIDR range such as 10.0.0.0/8 ({e})"),
                );
            }
        }
    }
    if config
        .tracker
        .bot_user_agents
        .iter()
        .any(|ua| ua.trim().is_empty())
    {
        return fail(
            "tracker.bot_user_agents",
            "entries must not be empty (an empty one would match every user agent)".to_owned(),
        );
    }
    if config.tracker.recent_opens_capacity == 0 {
        return fail(
            "tracker.recent_opens_capacity",
            "must be at least 1".to_owned(),
        );
    }
    if let Some(endpoint) = config.telemetry.otlp_endpoint()
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return fail(
            "telemetry.otlp_endpoint",
            "must be an http:// or https:// URL, or empty to disable tracing export".to_owned(),
        );
    }
    oauth(&config.oauth, &fail)
}

/// `[oauth]`: the clients of enabled providers must be complete, since nothing uses them
/// before a user tries to connect a mailbox.
fn oauth(
    oauth: &OAuthConfig,
    fail: &impl Fn(&str, String) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    if let Some(url) = oauth.redirect_url()
        && (!is_http_url(url) || url.contains('#'))
    {
        return fail(
            "oauth.redirect_url",
            "must be an http:// or https:// URL without a fragment (the api's \
             /api/v1/oauth/callback), or empty to disable OAuth connections"
                .to_owned(),
        );
    }
    if oauth.refresh_before_expiry_seconds >= 3600 {
        return fail(
            "oauth.refresh_before_expiry_seconds",
            "must be less than 3600: access tokens live an hour, so every use would refresh"
                .to_owned(),
        );
    }
    for (name, provider) in oauth.all_providers() {
        if !provider.enabled() {
            continue;
        }
        let key = |field: &str| format!("oauth.providers.{name}.{field}");
        if oauth.redirect_url().is_none() {
            return fail(
                "oauth.redirect_url",
                format!(
                    "must be set (the api's /api/v1/oauth/callback, as registered with the \
                     provider) when {} is",
                    key("client_id")
                ),
            );
        }
        if !provider.client_secret_is_set() {
            return fail(
                &key("client_secret"),
                format!("must be set when {} is", key("client_id")),
            );
        }
        let tenant = provider.tenant.trim();
        if tenant.is_empty() && (name == "microsoft" || provider.uses_tenant()) {
            return fail(
                &key("tenant"),
                format!(
                    "must name the tenant that replaces {TENANT_PLACEHOLDER} in the endpoints \
                     (`common`, `organizations`, `consumers` or a tenant id)"
                ),
            );
        }
        if !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        {
            return fail(
                &key("tenant"),
                "may contain only ASCII letters, digits, '.' and '-'".to_owned(),
            );
        }
        let revoke_url = provider.revoke_url();
        for (field, url) in [
            ("authorize_url", Some(provider.authorize_url())),
            ("token_url", Some(provider.token_url())),
            ("revoke_url", revoke_url),
        ] {
            if let Some(url) = url
                && !is_http_url(&url)
            {
                let also = if field == "revoke_url" {
                    ", or empty when the provider has no revocation endpoint"
                } else {
                    ""
                };
                return fail(
                    &key(field),
                    format!("must be an http:// or https:// URL{also}"),
                );
            }
        }
        if provider.scopes.is_empty() {
            return fail(&key("scopes"), "must list at least one scope".to_owned());
        }
        if let Some(index) = provider
            .scopes
            .iter()
            .position(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
        {
            return fail(
                &key("scopes"),
                format!("entry {index} must be one scope, without spaces"),
            );
        }
        if let Some(param) = provider
            .authorize_params
            .keys()
            .find(|param| RESERVED_AUTHORIZE_PARAMS.contains(&param.as_str()))
        {
            return fail(
                &key(&format!("authorize_params.{param}")),
                "is set by the authorization request itself".to_owned(),
            );
        }
        for (field, host, port, security) in [
            (
                "smtp",
                &provider.smtp_host,
                provider.smtp_port,
                provider.smtp_security,
            ),
            (
                "imap",
                &provider.imap_host,
                provider.imap_port,
                provider.imap_security,
            ),
        ] {
            if host.trim().is_empty() {
                return fail(
                    &key(&format!("{field}_host")),
                    "must name a host".to_owned(),
                );
            }
            // Access tokens in clear text are bearer credentials for the whole mailbox: only
            // a server on this host (a test's, a local relay) may go without TLS.
            if security == Security::None && !is_loopback_host(host) {
                return fail(
                    &key(&format!("{field}_security")),
                    format!(
                        "is `none`, which would send access tokens unencrypted to `{}`; \
                         only a loopback host may go without TLS",
                        host.trim()
                    ),
                );
            }
            if port == 0 {
                return fail(
                    &key(&format!("{field}_port")),
                    "must be greater than 0".to_owned(),
                );
            }
        }
    }
    Ok(())
}

/// `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || unbracketed
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Query parameters of an authorization request that carry its security (PKCE, `state`) or
/// its per-request values; configuration must not override them.
const RESERVED_AUTHORIZE_PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "login_hint",
];

/// An absolute http:// or https:// URL with a host, and no character that would need quoting
/// in a link or a header.
fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(|c: char| c.is_whitespace() || "\"'<>".contains(c))
        && reqwest::Url::parse(url)
            .is_ok_and(|parsed| parsed.host_str().is_some_and(|host| !host.is_empty()))
}

fn is_topic_safe(name: &str, allow_empty: bool) -> bool {
    (allow_empty || !name.is_empty())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Human name of the source that set `key`: the file path or the exact environment variable.
pub(super) fn source_of(figment: &Figment, key: &str) -> String {
    figment
        .find_metadata(key)
        .map_or_else(|| "built-in defaults".to_owned(), |m| source_name(m, key))
}

fn source_name(metadata: &figment::Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        // Our aliases name their variable exactly in their metadata.
        _ if metadata.name.starts_with("environment variable ") => metadata.name.to_string(),
        _ if metadata.name.contains("environment") => format!(
            "environment variable {}{}",
            super::ENV_PREFIX,
            key.replace('.', "__").to_ascii_uppercase()
        ),
        Some(figment::Source::Code(_)) => "built-in defaults".to_owned(),
        // The embedded defaults are the only source read from a string.
        None if metadata.name.ends_with("source string") => "built-in defaults".to_owned(),
        _ => metadata.name.to_string(),
    }
}
