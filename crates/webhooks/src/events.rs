//! The events endpoints receive, from what arrives on the service's topics: the
//! scheduler's `webhook-events` (already in the receivers' shape) and `mailbox-events`
//! (`mailbox.error`, `mailbox.reconnect_required`), plus the service's own
//! `webhook.disabled`. Every body is `{"type", "timestamp", "data"}`.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::db::webhook_endpoints::WebhookEndpoint;
use domain::events::{MailboxEvent, WebhookEvent};
use domain::kafka::Envelope;
use serde_json::{Value, json};
use uuid::Uuid;

/// One event to fan out to a workspace's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The recorded event's id: one delivery per endpoint and id.
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
    /// Events with the same key reach an endpoint one after another, in order.
    pub order_key: Uuid,
}

impl Event {
    /// The request body.
    pub fn body(&self) -> String {
        json!({
            "type": self.event_type,
            "timestamp": self.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }

    /// An event the scheduler recorded, keyed (and so ordered) by its enrollment.
    pub fn recorded(envelope: Envelope<WebhookEvent>) -> Self {
        let order_key = envelope.body.data["enrollment_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .unwrap_or(envelope.id);
        Event {
            id: envelope.id,
            workspace_id: envelope.workspace_id,
            event_type: envelope.body.event_type,
            occurred_at: envelope.occurred_at,
            data: envelope.body.data,
            order_key,
        }
    }

    /// What a mailbox event is for webhooks (`None`: not one of theirs), with the mailbox's
    /// address when it still exists.
    pub fn of_mailbox(envelope: &Envelope<MailboxEvent>, email: Option<&str>) -> Option<Self> {
        let mailbox_id = envelope.body.mailbox_id();
        let (event_type, more) = match &envelope.body {
            MailboxEvent::ReconnectRequired {
                provider, reason, ..
            } => (
                "mailbox.reconnect_required",
                json!({"provider": provider, "reason": reason}),
            ),
            MailboxEvent::Failing {
                reason, found_by, ..
            } => (
                "mailbox.error",
                json!({"reason": reason, "found_by": found_by}),
            ),
            MailboxEvent::Paused { .. } | MailboxEvent::Recovered { .. } => return None,
        };
        let mut data = json!({
            "workspace_id": envelope.workspace_id,
            "mailbox": {"id": mailbox_id, "email": email},
        });
        if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
            data.extend(more);
        }
        Some(Event {
            id: envelope.id,
            workspace_id: envelope.workspace_id,
            event_type: event_type.to_owned(),
            occurred_at: envelope.occurred_at,
            data,
            order_key: mailbox_id,
        })
    }

    /// The platform disabled `endpoint` at `at` (its reason is stored on it).
    pub fn disabled(endpoint: &WebhookEndpoint, at: DateTime<Utc>) -> Self {
        Event {
            id: Uuid::new_v5(
                &endpoint.id,
                format!("webhook.disabled/{}", at.timestamp_micros()).as_bytes(),
            ),
            workspace_id: endpoint.workspace_id,
            event_type: "webhook.disabled".to_owned(),
            occurred_at: at,
            data: json!({
                "workspace_id": endpoint.workspace_id,
                "webhook_id": endpoint.id,
                "url": endpoint.url,
                "reason": endpoint.disabled_reason,
            }),
            order_key: endpoint.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_event_keeps_its_id_time_and_data_and_is_keyed_by_enrollment() -> anyhow::Result<()>
    {
        let enrollment = Uuid::from_u128(7);
        let mut envelope = Envelope::new(
            Uuid::from_u128(1),
            WebhookEvent {
                event_type: "message.sent".to_owned(),
                data: json!({"enrollment_id": enrollment, "step_order": 1}),
            },
        );
        envelope.occurred_at = "2026-03-02T10:00:00.123456Z".parse()?;
        let event = Event::recorded(envelope.clone());
        assert_eq!(event.id, envelope.id);
        assert_eq!(event.order_key, enrollment);
        let body: Value = serde_json::from_str(&event.body())?;
        assert_eq!(
            body,
            json!({
                "type": "message.sent",
                "timestamp": "2026-03-02T10:00:00.123Z",
                "data": {"enrollment_id": enrollment, "step_order": 1},
            })
        );
        Ok(())
    }

    #[test]
    fn reconnect_required_names_the_mailbox_and_pauses_are_not_webhooks() {
        let mailbox_id = Uuid::from_u128(3);
        let envelope = Envelope::new(
            Uuid::from_u128(1),
            MailboxEvent::ReconnectRequired {
                mailbox_id,
                provider: "google".to_owned(),
                reason: "invalid_grant".to_owned(),
            },
        );
        let event = Event::of_mailbox(&envelope, Some("sales@example.com"));
        let event = event.as_ref();
        assert_eq!(
            event.map(|e| e.event_type.as_str()),
            Some("mailbox.reconnect_required")
        );
        assert_eq!(
            event.map(|e| e.data.clone()),
            Some(json!({
                "workspace_id": Uuid::from_u128(1),
                "mailbox": {"id": mailbox_id, "email": "sales@example.com"},
                "provider": "google",
                "reason": "invalid_grant",
            }))
        );
        let recovered = Envelope::new(
            Uuid::from_u128(1),
            MailboxEvent::Recovered {
                mailbox_id,
                failed_checks: 2,
            },
        );
        assert_eq!(Event::of_mailbox(&recovered, None), None);
    }

    #[test]
    fn a_failing_mailbox_is_a_mailbox_error_saying_why_and_who_found_it() {
        let envelope = Envelope::new(
            Uuid::from_u128(1),
            MailboxEvent::Failing {
                mailbox_id: Uuid::from_u128(3),
                reason: "auth: 535 5.7.8 authentication failed".to_owned(),
                found_by: domain::events::FoundBy::Sending,
            },
        );
        let event = Event::of_mailbox(&envelope, None);
        assert_eq!(
            event.as_ref().map(|e| e.event_type.as_str()),
            Some("mailbox.error")
        );
        let data = event.map(|e| e.data).unwrap_or_default();
        assert_eq!(data["reason"], "auth: 535 5.7.8 authentication failed");
        assert_eq!(data["found_by"], "sending");
        assert_eq!(data["mailbox"]["email"], Value::Null);
    }
}
