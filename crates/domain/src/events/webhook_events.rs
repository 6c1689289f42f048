//! `webhook-events`: what the scheduler has recorded, for the webhooks service to deliver to
//! the endpoints that asked for it (issue 18). Written by the scheduler through its outbox in
//! the transaction that records the event, keyed by enrollment id (so one enrollment's events
//! stay in order); never raw reports, and never twice for one recorded event.
//!
//! The envelope's `id` is the id of the recorded event (`events.id`, the `email-events`
//! envelope id), so a replay is recognisable; `enrollment.*` events, which have no row of
//! their own, take a UUIDv5 of that id and their type. `occurred_at` is when it happened.
//! Unlike the other topics the body is not an enum: `type` is one of
//! [`crate::webhooks::event_types::ALL`] and `data` is what the receiver gets, so the
//! webhooks service forwards it without knowing each type.
//!
//! Every `data` has `workspace_id`, `enrollment_id`, `sequence_id`, `step_order` and
//! `message_id` (null when not known, e.g. for a message deleted with its contact) and
//! `contact: {id, email}`. The rest per type:
//!
//! | type | more in `data` |
//! |---|---|
//! | `message.sent` | `message_id_header` |
//! | `message.bounced` | `bounce_type` (`hard` or `soft`), `diagnostic` (the server's reply, when known) |
//! | `message.failed` | `reason` |
//! | `message.opened` | `is_bot`, `bot_reason` |
//! | `message.clicked` | `url`, `is_bot`, `bot_reason` |
//! | `contact.replied` | `from`, `subject` (when the inbound email had them), `received_at` |
//! | `contact.auto_replied` | as `contact.replied`, plus `reason` (the rule that recognised it) |
//! | `contact.unsubscribed`, `contact.complained` | nothing more |
//! | `enrollment.completed` | nothing more (`step_order` is the last step sent) |
//! | `enrollment.stopped` | `status` (the enrollment's new status) and `reason` (its `stop_reason`) |
//!
//! A clicked event on the topic:
//!
//! ```json
//! {"id": "0193a1b2-...", "version": 1, "occurred_at": "2026-03-02T10:04:11Z",
//!  "workspace_id": "0193a1b0-...", "type": "message.clicked",
//!  "data": {"workspace_id": "0193a1b0-...", "enrollment_id": "0193a1b1-...",
//!           "sequence_id": "0193a1af-...", "step_order": 1, "message_id": "0193a1b1-...",
//!           "contact": {"id": "0193a1ae-...", "email": "ada@example.com"},
//!           "url": "https://example.com/pricing", "is_bot": true,
//!           "bot_reason": "click within 2 s of delivery"}}
//! ```
//!
//! A reply that stopped the enrollment gives two, in this order:
//!
//! ```json
//! {"type": "contact.replied", "data": {..., "from": "ada@example.com",
//!   "subject": "Re: Quick question", "received_at": "2026-03-02T11:00:00Z"}}
//! {"type": "enrollment.stopped", "data": {..., "status": "replied", "reason": "replied"}}
//! ```
//!
//! The others, each with the common fields shown as `...`:
//!
//! ```json
//! {"type": "message.sent", "data": {..., "message_id_header": "<0193a1b1-...@example.com>"}}
//! {"type": "message.bounced", "data": {..., "bounce_type": "hard", "diagnostic": "550 5.1.1 no such user"}}
//! {"type": "message.failed", "data": {..., "reason": "554 5.7.1 rejected"}}
//! {"type": "message.opened", "data": {..., "is_bot": false, "bot_reason": null}}
//! {"type": "contact.auto_replied", "data": {..., "from": "ada@example.com", "subject": "Out of office",
//!   "received_at": "2026-03-02T11:00:00Z", "reason": "Auto-Submitted: auto-replied"}}
//! {"type": "contact.unsubscribed", "data": {...}}
//! {"type": "contact.complained", "data": {...}}
//! {"type": "enrollment.completed", "data": {...}}
//! {"type": "enrollment.stopped", "data": {..., "status": "unsubscribed", "reason": "unsubscribed"}}
//! ```

use serde::{Deserialize, Serialize};

use crate::kafka::Payload;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// One of [`crate::webhooks::event_types::ALL`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// The body's `data`, as the receiver gets it.
    pub data: serde_json::Value,
}

impl Payload for WebhookEvent {
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::kafka::Envelope;

    #[test]
    fn type_and_data_sit_beside_the_envelope_fields() -> anyhow::Result<()> {
        let envelope = Envelope::new(
            Uuid::nil(),
            WebhookEvent {
                event_type: "message.sent".to_owned(),
                data: json!({"step_order": 1}),
            },
        );
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()?)?;
        assert_eq!(json["type"], "message.sent");
        assert_eq!(json["data"]["step_order"], 1);
        assert_eq!(json["version"], 1);
        let back = Envelope::<WebhookEvent>::from_json(&serde_json::to_vec(&json)?)?;
        assert_eq!(back, envelope);
        Ok(())
    }
}
