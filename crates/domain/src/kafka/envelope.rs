//! The one wire format of every topic: a JSON envelope with a type tag and a version.
//!
//! ```json
//! {"id": "...", "type": "sent", "version": 1, "occurred_at": "...",
//!  "workspace_id": "...", "payload": {...}}
//! ```
//! A topic's payload is an enum whose variants are the record types on it
//! (`#[serde(tag = "type", content = "payload")]`). Consumers reject a version newer than
//! they know, rather than misreading it.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A topic's payload type.
pub trait Payload: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Schema version written by this code; bumped on incompatible payload changes.
    const VERSION: u16;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// Unique per record; consumers deduplicate on it.
    pub id: Uuid,
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    pub workspace_id: Uuid,
    #[serde(flatten)]
    pub body: P,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record is not a valid envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("record has version {found}, newer than the {known} this service understands")]
    UnsupportedVersion { found: u16, known: u16 },
}

impl<P: Payload> Envelope<P> {
    pub fn new(workspace_id: Uuid, body: P) -> Self {
        Self {
            id: Uuid::now_v7(),
            version: P::VERSION,
            occurred_at: Utc::now(),
            workspace_id,
            body,
        }
    }

    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u16,
        }
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version > P::VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: version,
                known: P::VERSION,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "payload", rename_all = "snake_case")]
    enum Sample {
        Greeted { name: String },
        Left,
    }
    impl Payload for Sample {
        const VERSION: u16 = 2;
    }

    #[test]
    fn round_trips_with_type_and_payload_at_top_level() -> anyhow::Result<()> {
        let envelope = Envelope::new(Uuid::nil(), Sample::Greeted { name: "ada".into() });
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()?)?;
        assert_eq!(json["type"], "greeted");
        assert_eq!(json["payload"]["name"], "ada");
        assert_eq!(json["version"], 2);
        assert_eq!(json["workspace_id"], Uuid::nil().to_string());
        let back = Envelope::<Sample>::from_json(&serde_json::to_vec(&json)?)?;
        assert_eq!(back, envelope);
        Ok(())
    }

    #[test]
    fn unit_variant_needs_no_payload() -> anyhow::Result<()> {
        let envelope = Envelope::new(Uuid::nil(), Sample::Left);
        let back = Envelope::<Sample>::from_json(&envelope.to_json()?)?;
        assert_eq!(back.body, Sample::Left);
        Ok(())
    }

    #[test]
    fn newer_version_is_rejected() -> anyhow::Result<()> {
        let mut envelope = Envelope::new(Uuid::nil(), Sample::Left);
        envelope.version = 3;
        let error = Envelope::<Sample>::from_json(&envelope.to_json()?).err();
        assert!(matches!(
            error,
            Some(EnvelopeError::UnsupportedVersion { found: 3, known: 2 })
        ));
        Ok(())
    }

    #[test]
    fn unknown_type_is_malformed() {
        let bytes = br#"{"id":"00000000-0000-0000-0000-000000000000","version":1,
            "occurred_at":"2026-01-01T00:00:00Z","workspace_id":"00000000-0000-0000-0000-000000000000",
            "type":"exploded","payload":{}}"#;
        assert!(matches!(
            Envelope::<Sample>::from_json(bytes),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
