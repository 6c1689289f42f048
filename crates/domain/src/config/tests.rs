#![allow(clippy::result_large_err)] // figment::Jail fixes the closures' error type.

use figment::Jail;
use secrecy::ExposeSecret;

use super::*;

/// Loads inside a jail whose environment holds only what the test sets.
pub(super) fn load_in_jail(file: Option<&str>) -> Result<Config, ConfigError> {
    Config::load(file.map(Path::new))
}

pub(super) fn jail(test: impl FnOnce(&mut Jail) -> figment::error::Result<()>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        test(jail)
    });
}

#[test]
fn defaults_load_and_validate() {
    jail(|_jail| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.kafka.topics.email_jobs, "email-jobs");
        assert_eq!(config.kafka.topics.followup_events, "followup-events");
        assert_eq!(config.kafka.topics.email_retries, "email-retries");
        assert_eq!(config.kafka.topics.email_events, "email-events");
        assert_eq!(config.kafka.topics.mailbox_events, "mailbox-events");
        assert_eq!(config.kafka.topics.webhook_events, "webhook-events");
        assert_eq!(config.api.bind.port(), 8080);
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
        assert_eq!(config.telemetry.otlp_endpoint(), None);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    jail(|jail| {
        jail.create_file(
            "seq.toml",
            "[database]\nmax_connections = 7\n[kafka]\npartitions = 3\n",
        )?;
        jail.set_env("SEQ_KAFKA__PARTITIONS", "5");
        let config = load_in_jail(Some("seq.toml")).map_err(|e| e.to_string())?;
        assert_eq!(config.database.max_connections, 7, "file beats defaults");
        assert_eq!(config.kafka.partitions, 5, "env beats file");
        Ok(())
    });
}

#[test]
fn yaml_file_is_accepted_and_named_by_seq_config() {
    jail(|jail| {
        jail.create_file("seq.yaml", "telemetry:\n  log_format: pretty\n")?;
        jail.set_env(CONFIG_FILE_ENV, "seq.yaml");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.telemetry.log_format, LogFormat::Pretty);
        Ok(())
    });
}

#[test]
fn conventional_variables_are_honoured() {
    jail(|jail| {
        jail.set_env("DATABASE_URL", "postgres://app:pw@db.internal:5432/seq");
        jail.set_env("KAFKA_BROKERS", "k1:9092,k2:9092");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(
            config.database.url.expose_secret(),
            "postgres://app:pw@db.internal:5432/seq"
        );
        assert_eq!(config.kafka.brokers, "k1:9092,k2:9092");
        Ok(())
    });
}

#[test]
fn invalid_type_names_key_and_variable() {
    jail(|jail| {
        jail.set_env("SEQ_DATABASE__MAX_CONNECTIONS", "many");
        let error = load_in_jail(None)
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("`database.max_connections`"), "{error}");
        assert!(
            error.contains("environment variable SEQ_DATABASE__MAX_CONNECTIONS"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn invalid_value_names_key_and_file() {
    jail(|jail| {
        jail.create_file("bad.toml", "[kafka]\npartitions = 0\n")?;
        let error = load_in_jail(Some("bad.toml"))
            .err()
            .ok_or("expected an error")?;
        assert_eq!(error.key(), Some("kafka.partitions"));
        let message = error.to_string();
        assert!(message.contains("bad.toml"), "{message}");
        Ok(())
    });
}

#[test]
fn invalid_value_from_alias_names_the_variable() {
    jail(|jail| {
        jail.set_env("DATABASE_URL", "mysql://nope");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("database.url"));
        let message = error.to_string();
        assert!(
            message.contains("environment variable DATABASE_URL"),
            "{message}"
        );
        assert!(
            !message.contains("mysql://nope"),
            "secret value leaked: {message}"
        );
        Ok(())
    });
}

#[test]
fn unknown_key_in_a_section_is_rejected() {
    jail(|jail| {
        jail.create_file("typo.toml", "[database]\nmax_conections = 3\n")?;
        let error = load_in_jail(Some("typo.toml"))
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("max_conections"), "{error}");
        assert!(error.contains("typo.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn missing_file_is_an_error_naming_it() {
    jail(|_jail| {
        let error = load_in_jail(Some("nowhere.toml"))
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("nowhere.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn missing_required_value_names_the_key() {
    jail(|jail| {
        jail.set_env("SEQ_KAFKA__BROKERS", " , ");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("kafka.brokers"));
        assert!(
            error
                .to_string()
                .contains("environment variable SEQ_KAFKA__BROKERS"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn secrets_never_print() {
    jail(|jail| {
        jail.set_env("DATABASE_URL", "postgres://app:hunter2@db/seq");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(config.database.redacted_url(), "postgres://app:***@db/seq");
        Ok(())
    });
}

/// The README's configuration table documents exactly the keys the defaults define.
#[test]
fn readme_documents_every_setting() -> anyhow::Result<()> {
    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => keys(&path, inner, out),
                _ => out.push(path),
            }
        }
    }
    let defaults: toml::Table = toml::from_str(DEFAULTS_TOML)?;
    let mut settings = Vec::new();
    keys("", &defaults, &mut settings);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))?;
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key))
        .filter(|key| key.contains('.'))
        .collect();
    for setting in &settings {
        assert!(
            documented.contains(&setting.as_str()),
            "README lacks `{setting}`"
        );
    }
    for key in documented {
        assert!(
            settings.iter().any(|s| s == key),
            "README documents unknown `{key}`"
        );
    }
    Ok(())
}

#[test]
fn unusable_encryption_key_is_rejected_without_echoing_it() {
    jail(|jail| {
        jail.set_env("SEQ_SECURITY__ENCRYPTION_KEYS", "1:c2hvcnQ=");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("security.encryption_keys"));
        let message = error.to_string();
        assert!(message.contains("must be 32 bytes"), "{message}");
        assert!(
            message.contains("SEQ_SECURITY__ENCRYPTION_KEYS"),
            "{message}"
        );
        assert!(!message.contains("c2hvcnQ="), "{message}");
        Ok(())
    });
}

#[test]
fn unusable_tracking_key_is_rejected_without_echoing_it() {
    jail(|jail| {
        jail.set_env("SEQ_SECURITY__TRACKING_KEYS", "c2hvcnQ=");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("security.tracking_keys"));
        let message = error.to_string();
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(message.contains("SEQ_SECURITY__TRACKING_KEYS"), "{message}");
        assert!(!message.contains("c2hvcnQ="), "{message}");
        Ok(())
    });
}

#[test]
fn tracking_keys_sign_with_the_first_and_verify_with_all() {
    jail(|jail| {
        let old = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleS0=";
        let new = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleS0=";
        jail.set_env("SEQ_SECURITY__TRACKING_KEYS", old);
        let before = load_in_jail(None)
            .map_err(|e| e.to_string())?
            .security
            .token_signer()?
            .ok_or("no signer")?;
        jail.set_env("SEQ_SECURITY__TRACKING_KEYS", format!("{new}, {old}"));
        let after = load_in_jail(None)
            .map_err(|e| e.to_string())?
            .security
            .token_signer()?
            .ok_or("no signer")?;
        let action = crate::tracking_token::TrackingAction::Open {
            workspace_id: uuid::Uuid::nil(),
            enrollment_id: uuid::Uuid::nil(),
            message_id: uuid::Uuid::nil(),
        };
        let at = chrono::Utc::now();
        let old_token = before.encode(&action, at);
        assert_eq!(
            after.decode(&old_token).ok().map(|t| t.action),
            Some(action.clone())
        );
        assert!(before.decode(&after.encode(&action, at)).is_err());
        Ok(())
    });
}

#[test]
fn tracker_public_url_must_be_http() {
    jail(|jail| {
        jail.set_env("SEQ_TRACKER__PUBLIC_URL", "track.example.com");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("tracker.public_url"));
        Ok(())
    });
}

#[test]
fn tracker_cidr_ranges_must_parse() {
    jail(|jail| {
        jail.set_env(
            "SEQ_TRACKER__TRUSTED_PROXIES",
            "[\"10.0.0.0/8\", \"nonsense\"]",
        );
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("tracker.trusted_proxies"));
        Ok(())
    });
    jail(|jail| {
        jail.set_env("SEQ_TRACKER__BOT_IP_RANGES", "[\"17.0.0.0/33\"]");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("tracker.bot_ip_ranges"));
        Ok(())
    });
}

#[test]
fn tracker_client_ip_policy_is_one_of_four() {
    jail(|jail| {
        jail.set_env("SEQ_TRACKER__CLIENT_IP", "hash");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.tracker.client_ip, super::ClientIpPolicy::Hash);
        jail.set_env("SEQ_TRACKER__CLIENT_IP", "everything");
        assert!(load_in_jail(None).is_err());
        Ok(())
    });
}

#[test]
fn inbox_watcher_folders_default_to_discovery_and_must_be_names() {
    jail(|jail| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert!(config.inbox_watcher.folders.is_empty());
        jail.set_env("SEQ_INBOX_WATCHER__FOLDERS", "[\"INBOX\", \"Spam\"]");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.inbox_watcher.folders, ["INBOX", "Spam"]);
        for bad in ["[\"INBOX\", \" \"]", "[\"Spam\", \"Spam\"]"] {
            jail.set_env("SEQ_INBOX_WATCHER__FOLDERS", bad);
            let error = load_in_jail(None).err().ok_or("expected an error")?;
            assert_eq!(error.key(), Some("inbox_watcher.folders"), "{bad}");
        }
        Ok(())
    });
}

#[test]
fn sender_lease_must_outlast_the_smtp_timeouts() {
    jail(|jail| {
        jail.set_env("SEQ_SENDER_WORKER__LEASE_SECONDS", "60");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("sender_worker.lease_seconds"));
        Ok(())
    });
}

#[test]
fn dkim_keys_load_from_the_file_and_need_one_key_source() {
    jail(|jail| {
        jail.create_file(
            "good.toml",
            "[[sender_worker.dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\n\
             algorithm = \"ed25519\"\nprivate_key_file = \"/etc/dkim.pem\"\n",
        )?;
        let config = load_in_jail(Some("good.toml")).map_err(|e| e.to_string())?;
        let key = config.sender_worker.dkim.first().ok_or("no key loaded")?;
        assert_eq!(key.domain, "example.com");
        assert_eq!(key.algorithm, super::DkimAlgorithm::Ed25519);

        jail.create_file(
            "bad.toml",
            "[[sender_worker.dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\n",
        )?;
        let error = load_in_jail(Some("bad.toml"))
            .err()
            .ok_or("expected an error")?;
        assert_eq!(error.key(), Some("sender_worker.dkim[0]"));
        Ok(())
    });
}

#[test]
fn allowed_private_networks_default_to_none_and_parse_from_the_environment() {
    jail(|jail| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert!(config.security.allowed_private_networks.is_empty());
        let guard = config.security.outbound_guard();
        assert!(guard.allowed().is_empty());
        assert!(
            guard
                .refusal("127.0.0.1".parse().map_err(|_| "ip")?)
                .is_some()
        );

        jail.set_env(
            "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS",
            "[\"127.0.0.0/8\", \"::1/128\"]",
        );
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let guard = config.security.outbound_guard();
        assert_eq!(guard.allowed().len(), 2);
        assert_eq!(guard.refusal("127.0.0.1".parse().map_err(|_| "ip")?), None);
        assert_eq!(guard.refusal("::1".parse().map_err(|_| "ip")?), None);
        assert!(
            guard
                .refusal("10.0.0.1".parse().map_err(|_| "ip")?)
                .is_some()
        );
        Ok(())
    });
}

#[test]
fn allowed_private_networks_must_be_cidr_ranges() {
    jail(|jail| {
        jail.set_env(
            "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS",
            "[\"127.0.0.0/8\", \"10.0.0.1\"]",
        );
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("security.allowed_private_networks"));
        let message = error.to_string();
        assert!(
            message.contains("SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS"),
            "{message}"
        );
        assert!(
            message.contains("`10.0.0.1` is not a CIDR range"),
            "{message}"
        );
        Ok(())
    });
    jail(|jail| {
        jail.create_file(
            "seq.toml",
            "[security]\nallowed_private_networks = [\"fd00::/129\"]\n",
        )?;
        let error = load_in_jail(Some("seq.toml"))
            .err()
            .ok_or("expected an error")?;
        assert_eq!(error.key(), Some("security.allowed_private_networks"));
        assert!(error.to_string().contains("seq.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn a_uri_limit_the_http_layer_cannot_parse_names_its_key() {
    jail(|jail| {
        jail.set_env("SEQ_API__MAX_URI_BYTES", "100000");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("api.max_uri_bytes"));
        let message = error.to_string();
        assert!(message.contains("SEQ_API__MAX_URI_BYTES"), "{message}");
        assert!(message.contains("65534"), "{message}");
        Ok(())
    });
}

#[test]
fn outbox_settings_under_their_old_scheduler_names_still_apply_with_a_warning() {
    jail(|jail| {
        jail.create_file(
            "old.toml",
            "[scheduler]\noutbox_batch_size = 250\noutbox_poll_interval_ms = 75\n",
        )?;
        let config = load_in_jail(Some("old.toml")).map_err(|e| e.to_string())?;
        assert_eq!(config.outbox.batch_size, 250);
        assert_eq!(config.outbox.poll_interval_ms, 75);
        assert_eq!(config.deprecations.len(), 2, "{:?}", config.deprecations);
        assert!(
            config.deprecations[0].contains("`scheduler.outbox_batch_size` (from file")
                && config.deprecations[0].contains("use `outbox.batch_size`"),
            "{:?}",
            config.deprecations
        );
        Ok(())
    });
}

#[test]
fn an_outbox_setting_under_its_new_name_wins_over_the_old_one() {
    jail(|jail| {
        jail.set_env("SEQ_SCHEDULER__OUTBOX_BATCH_SIZE", "250");
        jail.set_env("SEQ_OUTBOX__BATCH_SIZE", "500");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.outbox.batch_size, 500);
        let warning = config.deprecations.join("; ");
        assert!(
            warning.contains(
                "`scheduler.outbox_batch_size` (from environment variable \
                 SEQ_SCHEDULER__OUTBOX_BATCH_SIZE) is deprecated and ignored"
            ),
            "{warning}"
        );
        assert!(
            warning.contains("environment variable SEQ_OUTBOX__BATCH_SIZE"),
            "{warning}"
        );
        Ok(())
    });
}

#[test]
fn a_bad_value_under_an_old_outbox_name_names_that_key_and_its_source() {
    jail(|jail| {
        jail.set_env("SEQ_SCHEDULER__OUTBOX_BATCH_SIZE", "0");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("scheduler.outbox_batch_size"));
        let message = error.to_string();
        assert!(
            message.contains("environment variable SEQ_SCHEDULER__OUTBOX_BATCH_SIZE"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn hello_name_must_be_a_fqdn_or_an_address_literal() {
    jail(|jail| {
        jail.create_file("ehlo.toml", "[sender_worker]\nhello_name = \"vm\"\n")?;
        let error = load_in_jail(Some("ehlo.toml"))
            .err()
            .ok_or("a short name accepted")?;
        assert_eq!(error.key(), Some("sender_worker.hello_name"));
        let message = error.to_string();
        assert!(message.contains("ehlo.toml"), "{message}");
        assert!(message.contains("fully qualified"), "{message}");

        jail.set_env("SEQ_SENDER_WORKER__HELLO_NAME", "10.0.0");
        let message = load_in_jail(None)
            .err()
            .ok_or("a bad literal accepted")?
            .to_string();
        assert!(
            message.contains("SEQ_SENDER_WORKER__HELLO_NAME"),
            "{message}"
        );

        // Brackets need quotes in a variable: figment reads `[...]` as a list.
        jail.set_env("SEQ_SENDER_WORKER__HELLO_NAME", "\"[IPv6:2001:db8::25]\"");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(
            config.sender_worker.hello_name(),
            Some("[IPv6:2001:db8::25]")
        );
        jail.set_env("SEQ_SENDER_WORKER__HELLO_NAME", "192.0.2.25");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.sender_worker.hello_name(), Some("192.0.2.25"));
        jail.set_env("SEQ_SENDER_WORKER__HELLO_NAME", "mail.example.com");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.sender_worker.hello_name(), Some("mail.example.com"));
        Ok(())
    });
}

#[test]
fn defaults_use_no_deprecated_name() {
    jail(|_jail| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert!(config.deprecations.is_empty(), "{:?}", config.deprecations);
        assert_eq!(config.outbox.retention_seconds, 0);
        Ok(())
    });
}

#[test]
fn hello_name_is_unset_by_default() {
    jail(|_| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.sender_worker.hello_name(), None);
        Ok(())
    });
}

#[test]
fn random_page_cost_must_be_positive() {
    jail(|jail| {
        jail.set_env("SEQ_DATABASE__RANDOM_PAGE_COST", "0");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("database.random_page_cost"));
        assert!(
            error
                .to_string()
                .contains("environment variable SEQ_DATABASE__RANDOM_PAGE_COST"),
            "{error}"
        );
        jail.set_env("SEQ_DATABASE__RANDOM_PAGE_COST", "2.5");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.database.random_page_cost, 2.5);
        Ok(())
    });
}

#[test]
fn kafka_compression_is_one_of_the_built_codecs() {
    jail(|jail| {
        jail.set_env("SEQ_KAFKA__COMPRESSION", "zstd");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert!(error.to_string().contains("`kafka.compression`"), "{error}");
        jail.set_env("SEQ_KAFKA__COMPRESSION", "none");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert_eq!(config.kafka.compression, crate::config::Compression::None);
        Ok(())
    });
}
