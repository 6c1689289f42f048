//! Conventional unprefixed variables (`DATABASE_URL`, `KAFKA_BROKERS`) mapped onto settings,
//! named after the variable itself so errors point at it.

use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider};

pub struct EnvAlias {
    var: &'static str,
    key: &'static str,
}

impl EnvAlias {
    pub fn new(var: &'static str, key: &'static str) -> Self {
        Self { var, key }
    }
}

impl Provider for EnvAlias {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        match std::env::var(self.var) {
            Ok(value) if !value.trim().is_empty() => {
                figment::providers::Serialized::default(self.key, value).data()
            }
            _ => Ok(Map::new()),
        }
    }
}
