//! Settings renamed in a later release: the old name keeps working, with a warning, while the
//! new one is not set; when both are, the new one wins and the warning says the old is ignored.

use figment::Figment;

use super::Config;
use super::validate::{ConfigError, source_of};

pub(super) fn apply(config: &mut Config, figment: &Figment) -> Result<(), ConfigError> {
    if let Some(value) = config.scheduler.outbox_batch_size {
        if value == 0 || value > 10_000 {
            let key = "scheduler.outbox_batch_size";
            return Err(invalid(figment, key, "must be between 1 and 10000"));
        }
        if use_old(
            config,
            figment,
            "scheduler.outbox_batch_size",
            "outbox.batch_size",
        ) {
            config.outbox.batch_size = value;
        }
    }
    if let Some(value) = config.scheduler.outbox_poll_interval_ms {
        if value == 0 {
            let key = "scheduler.outbox_poll_interval_ms";
            return Err(invalid(figment, key, "must be greater than 0"));
        }
        let (old, new) = (
            "scheduler.outbox_poll_interval_ms",
            "outbox.poll_interval_ms",
        );
        if use_old(config, figment, old, new) {
            config.outbox.poll_interval_ms = value;
        }
    }
    Ok(())
}

/// Records the warning; true when the old key's value is to be used.
fn use_old(config: &mut Config, figment: &Figment, old: &str, new: &str) -> bool {
    let old_source = source_of(figment, old);
    if !set_by_operator(figment, new) {
        config.deprecations.push(format!(
            "`{old}` (from {old_source}) is deprecated: use `{new}`"
        ));
        true
    } else {
        let new_source = source_of(figment, new);
        config.deprecations.push(format!(
            "`{old}` (from {old_source}) is deprecated and ignored: `{new}` (from {new_source}) is set"
        ));
        false
    }
}

/// Whether `key` comes from a file or the environment rather than the built-in defaults.
fn set_by_operator(figment: &Figment, key: &str) -> bool {
    figment.find_metadata(key).is_some_and(|metadata| {
        matches!(metadata.source, Some(figment::Source::File(_)))
            || metadata.name.contains("environment")
    })
}

fn invalid(figment: &Figment, key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        source_name: source_of(figment, key),
        message: message.to_owned(),
    }
}
