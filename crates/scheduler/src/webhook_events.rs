//! What the scheduler announces on `webhook-events` (see `domain::events::WebhookEvent` for
//! the bodies): each event it records, and the enrollment completions and stops that
//! applying it caused. Written through the outbox in the caller's transaction, keyed by
//! enrollment id, only by the transaction that recorded the event or changed the status: a
//! replayed event finds itself recorded and announces nothing.
//!
//! `held` has no webhook type (a person resumes the enrollment; nothing to react to), and
//! the API's manual resolutions (`domain::db::resolutions`) are not announced yet.
//!
//! Only what an enabled endpoint of the workspace wants is written: the webhooks service
//! delivers nothing else (`webhooks::fanout::plan`), and most workspaces have no endpoint, so
//! announcing everything cost an outbox row (insert, relay, delete) per event for nothing.
//! The endpoints are read once per write, in the writing transaction: an event recorded by a
//! transaction that sees an endpoint (created or enabled, committed, before that read) is
//! delivered to it; one recorded just before an endpoint appears is not, where the service
//! alone would have delivered an event it read after the endpoint appeared.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::db::outbox::{self, NewOutboxRecord};
use domain::db::progress::{EnrollmentContext, StoppedEnrollment};
use domain::events::{EmailEvent, WebhookEvent};
use domain::kafka::Envelope;
use domain::webhooks::event_types;
use serde_json::{Value, json};
use uuid::Uuid;

/// The `webhook-events` topic of one scheduler replica.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub topic: String,
}

/// What every `data` names: the enrollment, and the message when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct About {
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    pub sequence_id: Uuid,
    pub contact_id: Uuid,
    pub email: String,
    pub step_order: Option<i32>,
    pub message_id: Option<Uuid>,
}

impl About {
    pub fn of(
        enrollment: &EnrollmentContext,
        message_id: Option<Uuid>,
        step_order: Option<i32>,
    ) -> Self {
        Self {
            workspace_id: enrollment.workspace_id,
            enrollment_id: enrollment.id,
            sequence_id: enrollment.sequence_id,
            contact_id: enrollment.contact_id,
            email: enrollment.email.clone(),
            step_order,
            message_id,
        }
    }

    /// Another enrollment of the same contact, stopped with it (no message of its own).
    fn sibling(&self, stopped: &StoppedEnrollment) -> Self {
        Self {
            enrollment_id: stopped.id,
            sequence_id: stopped.sequence_id,
            step_order: Some(stopped.current_step),
            message_id: None,
            ..self.clone()
        }
    }

    fn data(&self, more: Value) -> Value {
        let mut data = json!({
            "workspace_id": self.workspace_id,
            "enrollment_id": self.enrollment_id,
            "sequence_id": self.sequence_id,
            "step_order": self.step_order,
            "message_id": self.message_id,
            "contact": {"id": self.contact_id, "email": self.email},
        });
        if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
            data.extend(more);
        }
        data
    }
}

/// The webhook type of an email event; `None` for `held`.
pub fn webhook_type(event: &EmailEvent) -> Option<&'static str> {
    Some(match event {
        EmailEvent::Sent { .. } => "message.sent",
        EmailEvent::Bounced { .. } => "message.bounced",
        EmailEvent::Failed { .. } => "message.failed",
        EmailEvent::Opened { .. } => "message.opened",
        EmailEvent::Clicked { .. } => "message.clicked",
        EmailEvent::Replied { .. } => "contact.replied",
        EmailEvent::AutoReplied { .. } => "contact.auto_replied",
        EmailEvent::Unsubscribed { .. } => "contact.unsubscribed",
        EmailEvent::Complained { .. } => "contact.complained",
        EmailEvent::Held { .. } => return None,
    })
}

/// What `data` holds beyond [`About`] for `event`, which happened at `at`. Client addresses
/// and user agents stay out: receivers get what the workspace's own API shows, no more.
fn specifics(event: &EmailEvent, at: DateTime<Utc>) -> Value {
    match event {
        EmailEvent::Sent {
            message_id_header, ..
        } => json!({"message_id_header": message_id_header}),
        EmailEvent::Bounced {
            hard, diagnostic, ..
        } => json!({
            "bounce_type": if *hard { "hard" } else { "soft" },
            "diagnostic": diagnostic,
        }),
        EmailEvent::Failed { reason, .. } => json!({"reason": reason}),
        EmailEvent::Opened {
            is_bot, bot_reason, ..
        } => json!({"is_bot": is_bot, "bot_reason": bot_reason}),
        EmailEvent::Clicked {
            url,
            is_bot,
            bot_reason,
            ..
        } => json!({"url": url, "is_bot": is_bot, "bot_reason": bot_reason}),
        // The inbox watcher dates a reply by when it arrived.
        EmailEvent::Replied { inbound, .. } => {
            json!({"from": inbound.from, "subject": inbound.subject, "received_at": at})
        }
        EmailEvent::AutoReplied {
            inbound, reason, ..
        } => json!({
            "from": inbound.from,
            "subject": inbound.subject,
            "received_at": at,
            "reason": reason,
        }),
        EmailEvent::Unsubscribed { .. }
        | EmailEvent::Complained { .. }
        | EmailEvent::Held { .. } => json!({}),
    }
}

/// One record for the topic, keyed by its enrollment.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub enrollment_id: Uuid,
    pub envelope: Envelope<WebhookEvent>,
}

fn announcement(
    id: Uuid,
    at: DateTime<Utc>,
    about: &About,
    event_type: &str,
    more: Value,
) -> Announcement {
    Announcement {
        enrollment_id: about.enrollment_id,
        envelope: Envelope {
            id,
            version: <WebhookEvent as domain::kafka::Payload>::VERSION,
            occurred_at: at,
            workspace_id: about.workspace_id,
            body: WebhookEvent {
                event_type: event_type.to_owned(),
                data: about.data(more),
            },
        },
    }
}

/// The recorded email event `envelope` (stored under its id) as a webhook event.
pub fn of_email_event(envelope: &Envelope<EmailEvent>, about: &About) -> Option<Announcement> {
    let event_type = webhook_type(&envelope.body)?;
    Some(announcement(
        envelope.id,
        envelope.occurred_at,
        about,
        event_type,
        specifics(&envelope.body, envelope.occurred_at),
    ))
}

/// An id for an event derived from the recorded event `source` (which has no row of its
/// own): the same every time, so even a re-derived one is recognisable.
fn derived_id(source: Uuid, event_type: &str, enrollment_id: Uuid) -> Uuid {
    Uuid::new_v5(&source, format!("{event_type}/{enrollment_id}").as_bytes())
}

pub fn enrollment_completed(source: Uuid, at: DateTime<Utc>, about: &About) -> Announcement {
    let id = derived_id(source, "enrollment.completed", about.enrollment_id);
    announcement(id, at, about, "enrollment.completed", json!({}))
}

pub fn enrollment_stopped(
    source: Uuid,
    at: DateTime<Utc>,
    about: &About,
    status: &str,
    reason: &str,
) -> Announcement {
    let id = derived_id(source, "enrollment.stopped", about.enrollment_id);
    announcement(
        id,
        at,
        about,
        "enrollment.stopped",
        json!({"status": status, "reason": reason}),
    )
}

/// The announcements of applying one recorded event, in the order they happened.
#[derive(Debug, Clone)]
pub struct Changes {
    source: Uuid,
    at: DateTime<Utc>,
    about: About,
    pub announcements: Vec<Announcement>,
}

impl Changes {
    /// Starts with the event itself.
    pub fn recorded(envelope: &Envelope<EmailEvent>, about: About) -> Self {
        Self {
            source: envelope.id,
            at: envelope.occurred_at,
            announcements: of_email_event(envelope, &about).into_iter().collect(),
            about,
        }
    }

    /// The event's enrollment completed.
    pub fn completed(&mut self) {
        self.announcements
            .push(enrollment_completed(self.source, self.at, &self.about));
    }

    /// The event's enrollment stopped.
    pub fn stopped(&mut self, status: &str, reason: &str) {
        self.announcements.push(enrollment_stopped(
            self.source,
            self.at,
            &self.about,
            status,
            reason,
        ));
    }

    /// Enrollments of the event's contact stopped with it (its own among them, or not).
    pub fn contact_stopped(&mut self, stopped: &[StoppedEnrollment], status: &str, reason: &str) {
        for enrollment in stopped {
            // Its own enrollment keeps naming the event's message and step.
            let about = if enrollment.id == self.about.enrollment_id {
                self.about.clone()
            } else {
                self.about.sibling(enrollment)
            };
            self.announcements.push(enrollment_stopped(
                self.source,
                self.at,
                &about,
                status,
                reason,
            ));
        }
    }
}

/// The event types the enabled endpoints of some workspaces want, by workspace (an empty
/// list of an endpoint: everything).
#[derive(Debug, Default)]
pub struct Subscriptions(HashMap<Uuid, Vec<Vec<String>>>);

impl Subscriptions {
    /// Those of `workspaces`, in one statement.
    pub async fn of(
        tx: &mut AsyncPgConnection,
        workspaces: &[Uuid],
    ) -> Result<Self, diesel::result::Error> {
        use domain::db::schema::webhook_endpoints;
        let rows: Vec<(Uuid, Vec<String>)> = webhook_endpoints::table
            .filter(webhook_endpoints::workspace_id.eq_any(workspaces))
            .filter(webhook_endpoints::enabled.eq(true))
            .select((
                webhook_endpoints::workspace_id,
                webhook_endpoints::event_types,
            ))
            .load(tx)
            .await?;
        let mut by_workspace: HashMap<Uuid, Vec<Vec<String>>> = HashMap::new();
        for (workspace, types) in rows {
            by_workspace.entry(workspace).or_default().push(types);
        }
        Ok(Self(by_workspace))
    }

    /// Whether an enabled endpoint of the workspace wants the announcement.
    pub fn want(&self, announcement: &Announcement) -> bool {
        let envelope = &announcement.envelope;
        self.0.get(&envelope.workspace_id).is_some_and(|endpoints| {
            endpoints
                .iter()
                .any(|types| event_types::wants(types, &envelope.body.event_type))
        })
    }
}

impl Webhooks {
    /// Writes those of `announcements` that an enabled endpoint of their workspace wants to
    /// the outbox (in the caller's transaction).
    pub async fn write(
        &self,
        tx: &mut AsyncPgConnection,
        announcements: &[Announcement],
    ) -> Result<(), diesel::result::Error> {
        if announcements.is_empty() {
            return Ok(());
        }
        let mut workspaces: Vec<Uuid> = announcements
            .iter()
            .map(|a| a.envelope.workspace_id)
            .collect();
        workspaces.sort_unstable();
        workspaces.dedup();
        let subscriptions = Subscriptions::of(tx, &workspaces).await?;
        let records = announcements
            .iter()
            .filter(|a| subscriptions.want(a))
            .map(|a| {
                NewOutboxRecord::from_envelope(
                    &self.topic,
                    a.enrollment_id.to_string(),
                    &a.envelope,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
        outbox::insert_many(tx, &records).await?;
        Ok(())
    }
}

/// The step a message is of; `None` when it is gone.
pub async fn step_of_message(
    tx: &mut AsyncPgConnection,
    message_id: Uuid,
) -> Result<Option<i32>, diesel::result::Error> {
    use domain::db::schema::messages;
    messages::table
        .find(message_id)
        .select(messages::step_order)
        .first(tx)
        .await
        .optional()
}

#[cfg(test)]
mod tests {
    use domain::events::{Client, Inbound, MessageRef};
    use domain::webhooks::event_types;

    use super::*;

    fn about() -> About {
        About {
            workspace_id: Uuid::from_u128(1),
            enrollment_id: Uuid::from_u128(2),
            sequence_id: Uuid::from_u128(3),
            contact_id: Uuid::from_u128(4),
            email: "ada@example.com".to_owned(),
            step_order: Some(2),
            message_id: Some(Uuid::from_u128(5)),
        }
    }

    fn message() -> MessageRef {
        MessageRef {
            message_id: Uuid::from_u128(5),
            enrollment_id: Uuid::from_u128(2),
        }
    }

    fn every_event() -> Vec<EmailEvent> {
        let inbound = Inbound {
            inbound_message_id: Some("<r@example.com>".to_owned()),
            from: Some("ada@example.com".to_owned()),
            subject: Some("Re: hello".to_owned()),
        };
        vec![
            EmailEvent::Sent {
                message: message(),
                step_order: 2,
                message_id_header: "<m@example.com>".to_owned(),
            },
            EmailEvent::Bounced {
                message: message(),
                hard: false,
                diagnostic: Some("452 4.2.2 mailbox full".to_owned()),
            },
            EmailEvent::Failed {
                message: message(),
                reason: "554 rejected".to_owned(),
            },
            EmailEvent::Opened {
                message: message(),
                is_bot: false,
                bot_reason: None,
                client: Client::default(),
            },
            EmailEvent::Clicked {
                message: message(),
                url: "https://example.com/a".to_owned(),
                is_bot: true,
                bot_reason: Some("scanner".to_owned()),
                client: Client {
                    user_agent: Some("Scanner/1".to_owned()),
                    client_ip: Some("203.0.113.0".to_owned()),
                },
            },
            EmailEvent::Replied {
                message: message(),
                inbound: inbound.clone(),
            },
            EmailEvent::AutoReplied {
                message: message(),
                inbound,
                reason: "Auto-Submitted: auto-replied".to_owned(),
            },
            EmailEvent::Unsubscribed {
                message: message(),
                client: Client::default(),
            },
            EmailEvent::Complained { message: message() },
        ]
    }

    fn envelope(event: EmailEvent) -> anyhow::Result<Envelope<EmailEvent>> {
        let mut envelope = Envelope::new(Uuid::from_u128(1), event);
        envelope.occurred_at = "2026-03-02T10:00:00Z".parse()?;
        Ok(envelope)
    }

    #[test]
    fn every_email_event_but_held_maps_to_a_known_type_once() {
        let types: Vec<&str> = every_event().iter().filter_map(webhook_type).collect();
        assert_eq!(
            types,
            [
                "message.sent",
                "message.bounced",
                "message.failed",
                "message.opened",
                "message.clicked",
                "contact.replied",
                "contact.auto_replied",
                "contact.unsubscribed",
                "contact.complained",
            ]
        );
        assert!(types.iter().all(|t| event_types::is_known(t)));
        let held = EmailEvent::Held {
            message: message(),
            step_order: 1,
            reason: "missing_variable: first_name".to_owned(),
        };
        assert_eq!(webhook_type(&held), None);
    }

    #[test]
    fn the_record_keeps_the_event_id_time_and_the_common_fields() -> anyhow::Result<()> {
        for event in every_event() {
            let source = envelope(event)?;
            let announced = of_email_event(&source, &about())
                .ok_or_else(|| anyhow::anyhow!("no announcement"))?;
            assert_eq!(announced.enrollment_id, Uuid::from_u128(2));
            assert_eq!(announced.envelope.id, source.id);
            assert_eq!(announced.envelope.occurred_at, source.occurred_at);
            assert_eq!(announced.envelope.workspace_id, Uuid::from_u128(1));
            let data = &announced.envelope.body.data;
            assert_eq!(data["enrollment_id"], Uuid::from_u128(2).to_string());
            assert_eq!(data["sequence_id"], Uuid::from_u128(3).to_string());
            assert_eq!(data["message_id"], Uuid::from_u128(5).to_string());
            assert_eq!(data["step_order"], 2);
            assert_eq!(
                data["contact"],
                json!({"id": Uuid::from_u128(4), "email": "ada@example.com"})
            );
        }
        Ok(())
    }

    #[test]
    fn each_type_adds_its_own_fields_and_no_client_details() -> anyhow::Result<()> {
        let data = |event: EmailEvent| -> anyhow::Result<Value> {
            of_email_event(&envelope(event)?, &about())
                .map(|a| a.envelope.body.data)
                .ok_or_else(|| anyhow::anyhow!("no announcement"))
        };
        let events: [EmailEvent; 9] = every_event()
            .try_into()
            .map_err(|_| anyhow::anyhow!("nine events"))?;
        let [sent, bounced, failed, opened, clicked, replied, auto, ..] = events;
        assert_eq!(data(sent)?["message_id_header"], "<m@example.com>");
        let bounced = data(bounced)?;
        assert_eq!(bounced["bounce_type"], "soft");
        assert_eq!(bounced["diagnostic"], "452 4.2.2 mailbox full");
        assert_eq!(data(failed)?["reason"], "554 rejected");
        let opened = data(opened)?;
        assert_eq!(
            (&opened["is_bot"], &opened["bot_reason"]),
            (&json!(false), &Value::Null)
        );
        let clicked = data(clicked)?;
        assert_eq!(clicked["url"], "https://example.com/a");
        assert_eq!(clicked["is_bot"], true);
        assert_eq!(clicked["bot_reason"], "scanner");
        assert!(clicked.get("user_agent").is_none() && clicked.get("client_ip").is_none());
        let replied = data(replied)?;
        assert_eq!(replied["from"], "ada@example.com");
        assert_eq!(replied["subject"], "Re: hello");
        assert_eq!(replied["received_at"], "2026-03-02T10:00:00Z");
        assert_eq!(data(auto)?["reason"], "Auto-Submitted: auto-replied");
        Ok(())
    }

    #[test]
    fn transitions_follow_the_event_with_stable_ids_of_their_own() -> anyhow::Result<()> {
        let source = envelope(every_event().remove(5))?;
        let mut changes = Changes::recorded(&source, about());
        changes.stopped("replied", "replied");
        let sibling = StoppedEnrollment {
            id: Uuid::from_u128(9),
            sequence_id: Uuid::from_u128(8),
            current_step: 1,
        };
        changes.contact_stopped(
            std::slice::from_ref(&sibling),
            "unsubscribed",
            "unsubscribed",
        );
        let types: Vec<&str> = changes
            .announcements
            .iter()
            .map(|a| a.envelope.body.event_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "contact.replied",
                "enrollment.stopped",
                "enrollment.stopped"
            ]
        );
        let stop = &changes.announcements[1];
        assert_ne!(stop.envelope.id, source.id);
        assert_eq!(
            stop.envelope.id,
            enrollment_stopped(source.id, source.occurred_at, &about(), "x", "y")
                .envelope
                .id
        );
        assert_eq!(stop.envelope.body.data["reason"], "replied");
        assert_eq!(
            stop.envelope.body.data["message_id"],
            Uuid::from_u128(5).to_string()
        );
        let other = &changes.announcements[2];
        assert_eq!(other.enrollment_id, sibling.id);
        assert_eq!(
            other.envelope.body.data["sequence_id"],
            sibling.sequence_id.to_string()
        );
        assert_eq!(other.envelope.body.data["step_order"], 1);
        assert_eq!(other.envelope.body.data["message_id"], Value::Null);
        assert_ne!(other.envelope.id, stop.envelope.id);

        let mut completed = Changes::recorded(&envelope(every_event().remove(0))?, about());
        completed.completed();
        assert_eq!(
            completed.announcements[1].envelope.body.event_type,
            "enrollment.completed"
        );
        Ok(())
    }

    #[test]
    fn only_what_an_enabled_endpoint_of_the_workspace_wants_is_written() -> anyhow::Result<()> {
        let sent = of_email_event(&envelope(every_event().remove(0))?, &about())
            .ok_or_else(|| anyhow::anyhow!("no announcement"))?;
        let completed = enrollment_completed(sent.envelope.id, sent.envelope.occurred_at, &about());
        let mut elsewhere = sent.clone();
        elsewhere.envelope.workspace_id = Uuid::from_u128(7);
        let none = Subscriptions::default();
        assert!(!none.want(&sent));
        let only_sent = Subscriptions(HashMap::from([(
            Uuid::from_u128(1),
            vec![vec!["message.sent".to_owned()]],
        )]));
        assert!(only_sent.want(&sent));
        assert!(!only_sent.want(&completed));
        assert!(!only_sent.want(&elsewhere));
        let everything = Subscriptions(HashMap::from([(
            Uuid::from_u128(1),
            vec![vec!["contact.replied".to_owned()], vec![]],
        )]));
        assert!(everything.want(&sent) && everything.want(&completed));
        Ok(())
    }

    #[test]
    fn the_event_s_own_enrollment_stopped_with_its_contact_keeps_its_message() -> anyhow::Result<()>
    {
        let source = envelope(every_event().remove(7))?;
        let mut changes = Changes::recorded(&source, about());
        let own = StoppedEnrollment {
            id: Uuid::from_u128(2),
            sequence_id: Uuid::from_u128(3),
            current_step: 3,
        };
        changes.contact_stopped(&[own], "unsubscribed", "unsubscribed");
        let expected = about().data(json!({"status": "unsubscribed", "reason": "unsubscribed"}));
        assert_eq!(changes.announcements[1].envelope.body.data, expected);
        Ok(())
    }
}
