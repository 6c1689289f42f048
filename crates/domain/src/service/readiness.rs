//! Readiness of a service: its database is reachable with every migration applied, and its
//! Kafka cluster answers. Each dependency is checked concurrently and reported by name.

use serde::Serialize;

use crate::db::{self, PgPool};
use crate::kafka::health::KafkaProbe;

#[derive(Clone)]
pub struct Readiness {
    pool: PgPool,
    kafka: KafkaProbe,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<Result<(), String>> for CheckResult {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                reason: None,
            },
            Err(reason) => Self {
                ok: false,
                reason: Some(reason),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub database: CheckResult,
    pub kafka: CheckResult,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.checks.database.ok && self.checks.kafka.ok
    }
}

impl Readiness {
    pub fn new(pool: PgPool, kafka: KafkaProbe) -> Self {
        Self { pool, kafka }
    }

    pub async fn check(&self) -> ReadinessReport {
        let (database, kafka) = tokio::join!(db::health::check(&self.pool), self.kafka.check());
        let checks = Checks {
            database: database.into(),
            kafka: kafka.into(),
        };
        let ready = checks.database.ok && checks.kafka.ok;
        ReadinessReport {
            status: if ready { "ready" } else { "unavailable" },
            checks,
        }
    }
}
