//! From a classified inbound email to the events it means: which of our sent messages it is
//! about, and the event with an id of its own.
//!
//! A reply or automatic answer is matched through its In-Reply-To/References to the
//! Message-IDs we stored, else through its sender (a contact this mailbox wrote to) and the
//! thread's subject. A bounce (or a spam complaint, an RFC 5965 feedback report) is matched
//! through the returned message's Message-ID, else through the failed (or complaining)
//! recipient. Mail that matches nothing of ours is none of our business
//! and yields no event.
//!
//! Event ids are derived from what was seen (kind, our message, the inbound Message-ID, or
//! the folder position when it has none), so reading the same email again, after a restart
//! or a UIDVALIDITY change, produces the same event id, which the scheduler stores once.
//! The folder is deliberately not part of an id derived from the Message-ID: the same report
//! found in INBOX and in Junk (a copy, or moved there by the owner or a filter after it was
//! read) is one event, counted once. An email without a Message-ID is named by its position,
//! which includes the folder (UIDs of two folders may be equal); such an email found in two
//! folders yields two events, as nothing says they are the same.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use domain::db::inbox::{self, SentMessage, WatchedMailbox};
use domain::events::{EmailEvent, Inbound, MessageRef};
use domain::kafka::{Envelope, Payload as _};
use uuid::Uuid;

use super::classify::{self, Kind};

/// Namespace of the event ids the watcher derives (a fixed random UUID).
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5e9c_1d0a_47b2_4c8e_9f31_a6d2_0b7e_c415);

/// Sent messages considered when matching by sender and subject.
const SENDER_CANDIDATES: i64 = 50;

/// Where an inbound email sits: enough to name it when it has no Message-ID.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub mailbox_id: Uuid,
    pub folder: &'a str,
    pub uid_validity: u32,
    pub uid: u32,
}

/// The events an inbound email means (none when it is about nothing of ours), as envelopes.
pub async fn events_for(
    conn: &mut AsyncPgConnection,
    mailbox: &WatchedMailbox,
    position: Position<'_>,
    received_at: DateTime<Utc>,
    email: &classify::Inbound,
) -> Result<Vec<Envelope<EmailEvent>>, diesel::result::Error> {
    let inbound = Inbound {
        inbound_message_id: email.message_id.clone(),
        from: email.from.clone(),
        subject: email.subject.clone(),
    };
    let mut events = Vec::new();
    match &email.kind {
        Kind::Personal | Kind::AutoReply { .. } => {
            if email.from.as_deref() == Some(mailbox.email.as_str()) {
                // The mailbox's own message (a copy of what it sent), not an answer.
                return Ok(events);
            }
            let Some(sent) = answered_message(conn, mailbox, email).await? else {
                return Ok(events);
            };
            let message = message_ref(&sent);
            let (kind, body) = match &email.kind {
                Kind::AutoReply { reason } => (
                    "auto_replied",
                    EmailEvent::AutoReplied {
                        message,
                        inbound,
                        reason: reason.clone(),
                    },
                ),
                _ => ("replied", EmailEvent::Replied { message, inbound }),
            };
            let id = event_id(
                kind,
                sent.message_id,
                email.message_id.as_deref(),
                "",
                position,
            );
            events.push(envelope(mailbox, id, received_at, body));
        }
        Kind::Bounce(bounces) => {
            for bounce in bounces {
                let Some(sent) = returned_message(
                    conn,
                    mailbox,
                    email,
                    bounce.original_message_id.as_deref(),
                    bounce.recipient.as_deref(),
                )
                .await?
                else {
                    continue;
                };
                let recipient = bounce.recipient.as_deref().unwrap_or("");
                let id = event_id(
                    "bounced",
                    sent.message_id,
                    email.message_id.as_deref(),
                    recipient,
                    position,
                );
                let body = EmailEvent::Bounced {
                    message: message_ref(&sent),
                    hard: bounce.hard,
                    diagnostic: diagnostic(bounce),
                };
                events.push(envelope(mailbox, id, received_at, body));
            }
        }
        Kind::Complaint(complaint) => {
            let sent = returned_message(
                conn,
                mailbox,
                email,
                complaint.original_message_id.as_deref(),
                complaint.recipient.as_deref(),
            )
            .await?;
            if let Some(sent) = sent {
                let id = event_id(
                    "complained",
                    sent.message_id,
                    email.message_id.as_deref(),
                    "",
                    position,
                );
                let body = EmailEvent::Complained {
                    message: message_ref(&sent),
                };
                events.push(envelope(mailbox, id, received_at, body));
            }
        }
        Kind::Ignored { .. } => {}
    }
    Ok(events)
}

/// The sent message an answer refers to: the first of its references that is ours, else the
/// newest message this mailbox sent its sender under the same thread subject.
async fn answered_message(
    conn: &mut AsyncPgConnection,
    mailbox: &WatchedMailbox,
    email: &classify::Inbound,
) -> Result<Option<SentMessage>, diesel::result::Error> {
    if let Some(sent) = by_reference(conn, mailbox, &email.references).await? {
        return Ok(Some(sent));
    }
    let (Some(from), Some(subject)) = (email.from.as_deref(), email.subject.as_deref()) else {
        return Ok(None);
    };
    let thread = classify::thread_subject(subject);
    if thread.is_empty() {
        return Ok(None);
    }
    let candidates = inbox::sent_to(
        conn,
        mailbox.workspace_id,
        mailbox.mailbox_id,
        from,
        SENDER_CANDIDATES,
    )
    .await?;
    Ok(candidates.into_iter().find(|sent| {
        sent.subject
            .as_deref()
            .is_some_and(|s| classify::thread_subject(s) == thread)
    }))
}

/// The message a report (bounce, complaint) returns: named by its Message-ID (in the returned
/// message or headers, or the report's own references), else the newest message this mailbox
/// sent the recipient the report names.
async fn returned_message(
    conn: &mut AsyncPgConnection,
    mailbox: &WatchedMailbox,
    email: &classify::Inbound,
    original_message_id: Option<&str>,
    recipient: Option<&str>,
) -> Result<Option<SentMessage>, diesel::result::Error> {
    let mut references: Vec<String> = original_message_id.map(str::to_owned).into_iter().collect();
    references.extend(email.references.iter().cloned());
    if let Some(sent) = by_reference(conn, mailbox, &references).await? {
        // A report about a message to someone else than this recipient is not about it.
        if recipient.is_none_or(|r| r == sent.contact_email) {
            return Ok(Some(sent));
        }
    }
    let Some(recipient) = recipient else {
        return Ok(None);
    };
    let mut candidates =
        inbox::sent_to(conn, mailbox.workspace_id, mailbox.mailbox_id, recipient, 1).await?;
    Ok(candidates.pop())
}

/// The first of `references` (in the order given) that names one of our messages.
async fn by_reference(
    conn: &mut AsyncPgConnection,
    mailbox: &WatchedMailbox,
    references: &[String],
) -> Result<Option<SentMessage>, diesel::result::Error> {
    if references.is_empty() {
        return Ok(None);
    }
    let ids: Vec<Uuid> = references.iter().filter_map(|r| our_id(r)).collect();
    let found = inbox::sent_by_id(conn, mailbox.workspace_id, &ids).await?;
    Ok(ids
        .iter()
        .find_map(|id| found.iter().find(|sent| sent.message_id == *id).cloned()))
}

/// The message id in a Message-ID of ours (`<uuid@domain>`).
fn our_id(reference: &str) -> Option<Uuid> {
    let inner = reference.strip_prefix('<')?.strip_suffix('>')?;
    let (local, _) = inner.split_once('@')?;
    Uuid::try_parse(local).ok()
}

fn message_ref(sent: &SentMessage) -> MessageRef {
    MessageRef {
        message_id: sent.message_id,
        enrollment_id: sent.enrollment_id,
    }
}

fn diagnostic(bounce: &classify::Bounce) -> Option<String> {
    match (&bounce.status, &bounce.diagnostic) {
        (Some(status), Some(text)) if text.contains(status.as_str()) => Some(text.clone()),
        (Some(status), Some(text)) => Some(format!("{status} {text}")),
        (Some(status), None) => Some(status.clone()),
        (None, text) => text.clone(),
    }
}

/// The same inbound email about the same message always yields the same id.
pub fn event_id(
    kind: &str,
    message_id: Uuid,
    inbound_message_id: Option<&str>,
    recipient: &str,
    position: Position<'_>,
) -> Uuid {
    let seen = match inbound_message_id {
        Some(header) => format!("header:{header}"),
        // INBOX keeps the form its ids had before other folders were read.
        None if super::folders::is_inbox(position.folder) => format!(
            "position:{}:{}:{}",
            position.mailbox_id, position.uid_validity, position.uid
        ),
        None => format!(
            "position:{}:{}:{}:{}",
            position.mailbox_id, position.folder, position.uid_validity, position.uid
        ),
    };
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{kind}|{message_id}|{recipient}|{seen}").as_bytes(),
    )
}

fn envelope(
    mailbox: &WatchedMailbox,
    id: Uuid,
    occurred_at: DateTime<Utc>,
    body: EmailEvent,
) -> Envelope<EmailEvent> {
    Envelope {
        id,
        version: EmailEvent::VERSION,
        occurred_at,
        workspace_id: mailbox.workspace_id,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(uid: u32) -> Position<'static> {
        in_folder("INBOX", uid)
    }

    fn in_folder(folder: &str, uid: u32) -> Position<'_> {
        Position {
            mailbox_id: Uuid::from_u128(1),
            folder,
            uid_validity: 7,
            uid,
        }
    }

    #[test]
    fn our_message_ids_yield_the_message_id() {
        let id = Uuid::from_u128(0x0192_f1c2_0000_7000_8000_0000_0000_0001);
        assert_eq!(our_id(&format!("<{id}@Example.COM>")), Some(id));
        assert_eq!(our_id("<CAF=abc@mail.gmail.com>"), None);
        assert_eq!(our_id(&id.to_string()), None);
    }

    #[test]
    fn event_ids_depend_on_what_was_seen_not_where() {
        let message = Uuid::from_u128(42);
        let with_header = |uid| event_id("replied", message, Some("<a@b>"), "", position(uid));
        assert_eq!(with_header(1), with_header(2));
        assert_ne!(
            with_header(1),
            event_id("auto_replied", message, Some("<a@b>"), "", position(1))
        );
        let without = |uid| event_id("replied", message, None, "", position(uid));
        assert_ne!(without(1), without(2));
        assert_ne!(
            event_id("bounced", message, None, "a@x", position(1)),
            event_id("bounced", message, None, "b@x", position(1))
        );
    }

    #[test]
    fn the_same_report_in_two_folders_is_one_event_unless_only_its_position_names_it() {
        let message = Uuid::from_u128(42);
        let report = |folder, uid| {
            event_id(
                "bounced",
                message,
                Some("<dsn@mx>"),
                "a@x",
                in_folder(folder, uid),
            )
        };
        assert_eq!(report("INBOX", 3), report("Junk", 3));
        assert_eq!(report("INBOX", 3), report("Spam", 9));
        let unnamed =
            |folder, uid| event_id("bounced", message, None, "a@x", in_folder(folder, uid));
        assert_ne!(unnamed("INBOX", 3), unnamed("Junk", 3));
        assert_ne!(unnamed("Junk", 3), unnamed("Spam", 3));
        assert_eq!(unnamed("Junk", 3), unnamed("Junk", 3));
        // INBOX ids are what they were before folders were part of positions.
        let before = Uuid::new_v5(
            &EVENT_NAMESPACE,
            format!("bounced|{message}|a@x|position:{}:7:3", Uuid::from_u128(1)).as_bytes(),
        );
        assert_eq!(unnamed("INBOX", 3), before);
        assert_eq!(unnamed("inbox", 3), before);
    }

    #[test]
    fn diagnostics_carry_the_status_once() {
        let bounce = |status: Option<&str>, text: Option<&str>| classify::Bounce {
            recipient: None,
            hard: true,
            status: status.map(str::to_owned),
            diagnostic: text.map(str::to_owned),
            original_message_id: None,
        };
        assert_eq!(
            diagnostic(&bounce(Some("5.1.1"), Some("550 5.1.1 user unknown"))).as_deref(),
            Some("550 5.1.1 user unknown")
        );
        assert_eq!(
            diagnostic(&bounce(Some("5.1.1"), Some("no such user"))).as_deref(),
            Some("5.1.1 no such user")
        );
        assert_eq!(diagnostic(&bounce(None, None)), None);
    }
}
