//! Decides, for a claimed message, whether it is still to be sent, and if so gathers its
//! email, SMTP envelope and server. Pure apart from decrypting the mailbox password.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::crypto::SecretCipher;
use domain::db::mailboxes::smtp_password_context;
use domain::db::sending::{ClaimMailbox, ClaimSequence, ClaimedMessage, ThreadEmail};
use domain::mail::{Login, Security, Server};
use domain::templates::ContactFields;
use lettre::address::{Address, Envelope};

use crate::compose::{Email, Party, Source, Thread, Tracking};
use crate::outcome::{MessageFacts, Outcome};
use crate::smtp::MailboxServer;

/// A message ready to go out.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub email: Email,
    pub envelope: Envelope,
    /// With `login` unset when `oauth`: the delivery logs in with the mailbox's access token.
    pub server: MailboxServer,
    pub oauth: bool,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Send(Box<Prepared>),
    /// Not sent, with this outcome.
    Skip(Outcome),
}

/// A step's templates as one of its variants (or none) sends them, parsed once for all the
/// messages of a batch that send it.
#[derive(Debug, Clone)]
pub struct Step {
    pub subject: Source,
    pub content: Source,
    pub thread_with_previous: bool,
}

/// What a claimed message shares with the other messages of its batch.
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    pub step: &'a Step,
    pub mailbox: &'a ClaimMailbox,
    pub sequence: &'a ClaimSequence,
    /// Subjects of the thread's first emails, parsed, by source text; one missing here is
    /// parsed when needed.
    pub thread_subjects: &'a HashMap<String, Source>,
}

/// What preparing needs besides the message.
pub struct Context<'a> {
    pub cipher: &'a SecretCipher,
    /// The tracker's public URL, for sequences and workspaces without their own.
    pub tracker_url: &'a str,
    pub now: DateTime<Utc>,
}

/// The identifiers the outcome of `message` is recorded with; `mailbox_email` names the
/// domain of a `Message-ID` the message has none of yet (`None`: its mailbox is gone).
pub fn facts(message: &ClaimedMessage, mailbox_email: Option<&str>) -> MessageFacts {
    MessageFacts {
        id: message.id,
        workspace_id: message.workspace_id,
        enrollment_id: message.enrollment_id,
        mailbox_id: message.mailbox_id,
        step_order: message.step_order,
        attempts: message.attempts,
        message_id_header: message_id_header(message, mailbox_email.unwrap_or_default()),
    }
}

/// `thread` holds the enrollment's emails sent so far (any order of enrollments is fine:
/// only this message's enrollment is used), oldest step first.
pub fn prepare(
    message: &ClaimedMessage,
    shared: Shared<'_>,
    thread: &[ThreadEmail],
    context: &Context,
) -> Verdict {
    let Shared {
        mailbox, sequence, ..
    } = shared;
    if message.enrollment_status != "active" {
        return Verdict::Skip(Outcome::Cancelled {
            reason: format!("the enrollment is {}", message.enrollment_status),
        });
    }
    if message.contact_status != "active" {
        return Verdict::Skip(Outcome::Failed {
            reason: format!("the contact is {}", message.contact_status),
        });
    }
    if message.suppressed {
        return Verdict::Skip(Outcome::Failed {
            reason: "the contact's address or domain is suppressed".to_owned(),
        });
    }
    if mailbox.status != "active" {
        return Verdict::Skip(Outcome::Retry {
            error: format!("the mailbox is {}", mailbox.status),
        });
    }
    if sequence.status != "active" {
        return Verdict::Skip(Outcome::Retry {
            error: format!("the sequence is {}", sequence.status),
        });
    }
    let envelope = match envelope(message, mailbox) {
        Ok(envelope) => envelope,
        Err(reason) => return Verdict::Skip(Outcome::Failed { reason }),
    };
    let server = match server(mailbox, context.cipher) {
        Ok(server) => server,
        Err(outcome) => return Verdict::Skip(outcome),
    };
    Verdict::Send(Box::new(Prepared {
        email: email(message, shared, thread, context),
        envelope,
        server,
        oauth: mailbox.oauth,
    }))
}

fn email(
    message: &ClaimedMessage,
    shared: Shared<'_>,
    thread: &[ThreadEmail],
    context: &Context,
) -> Email {
    let Shared {
        step,
        mailbox,
        sequence,
        thread_subjects,
    } = shared;
    Email {
        from: Party {
            address: mailbox.email.clone(),
            name: mailbox.name.clone(),
        },
        to: Party {
            address: message.contact_email.clone(),
            name: full_name(message),
        },
        subject: step.subject.clone(),
        content: step.content.clone(),
        contact: ContactFields {
            email: message.contact_email.clone(),
            first_name: message.first_name.clone(),
            last_name: message.last_name.clone(),
            company: message.company.clone(),
            title: message.title.clone(),
            attributes: message.attributes.clone(),
        },
        message_id: message.id,
        workspace_id: message.workspace_id,
        enrollment_id: message.enrollment_id,
        message_id_header: message_id_header(message, &mailbox.email),
        date: context.now,
        thread: step
            .thread_with_previous
            .then(|| thread_of(message, thread, thread_subjects))
            .flatten(),
        tracking: Tracking {
            open: sequence.open_tracking,
            click: sequence.click_tracking,
            url_text_links: sequence.track_url_text_links,
            base_url: tracking_base_url(sequence, context.tracker_url),
            unsubscribe_link: sequence.unsubscribe_link,
            unsubscribe_mailto: sequence.unsubscribe_mailto.clone(),
        },
    }
}

/// The earlier emails of the message's enrollment, as the thread it replies in.
fn thread_of(
    message: &ClaimedMessage,
    emails: &[ThreadEmail],
    subjects: &HashMap<String, Source>,
) -> Option<Thread> {
    let earlier: Vec<&ThreadEmail> = emails
        .iter()
        .filter(|e| e.enrollment_id == message.enrollment_id)
        .filter(|e| e.step_order < message.step_order && e.message_id != message.id)
        .collect();
    let first = earlier.iter().min_by_key(|e| e.step_order)?;
    let mut ordered = earlier.clone();
    ordered.sort_by_key(|e| e.step_order);
    Some(Thread {
        first_subject: subjects
            .get(&first.subject_source)
            .cloned()
            .unwrap_or_else(|| Source::new(first.subject_source.as_str())),
        first_message_id: first.message_id,
        references: ordered
            .iter()
            .map(|e| e.message_id_header.clone())
            .collect(),
    })
}

fn full_name(message: &ClaimedMessage) -> Option<String> {
    let name = [message.first_name.as_deref(), message.last_name.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

/// The sequence's tracking domain, else the workspace's tracking URL, else the tracker's.
fn tracking_base_url(sequence: &ClaimSequence, tracker_url: &str) -> String {
    let domain = sequence
        .tracking_domain
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let Some(domain) = domain {
        return if domain.starts_with("http://") || domain.starts_with("https://") {
            domain.to_owned()
        } else {
            format!("https://{domain}")
        };
    }
    sequence
        .workspace_tracking_base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(tracker_url)
        .to_owned()
}

fn message_id_header(message: &ClaimedMessage, mailbox_email: &str) -> String {
    message.message_id_header.clone().unwrap_or_else(|| {
        let domain = mailbox_email
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        format!("<{}@{domain}>", message.id)
    })
}

fn envelope(message: &ClaimedMessage, mailbox: &ClaimMailbox) -> Result<Envelope, String> {
    let from: Address = mailbox
        .email
        .trim()
        .parse()
        .map_err(|e| format!("the mailbox address does not parse: {e}"))?;
    let to: Address = message
        .contact_email
        .trim()
        .parse()
        .map_err(|e| format!("the contact address does not parse: {e}"))?;
    Envelope::new(Some(from), vec![to]).map_err(|e| format!("no valid envelope: {e}"))
}

fn server(mailbox: &ClaimMailbox, cipher: &SecretCipher) -> Result<MailboxServer, Outcome> {
    let security: Security =
        mailbox
            .smtp_security
            .parse()
            .map_err(|e: String| Outcome::MailboxFailing {
                error: format!("the mailbox's SMTP settings are invalid: {e}"),
            })?;
    let port = u16::try_from(mailbox.smtp_port).map_err(|_| Outcome::MailboxFailing {
        error: format!("the mailbox's SMTP port {} is invalid", mailbox.smtp_port),
    })?;
    let login = match (&mailbox.smtp_username, &mailbox.smtp_password_encrypted) {
        _ if mailbox.oauth => None,
        (Some(username), Some(encrypted)) => {
            let password = cipher
                .decrypt(encrypted, &smtp_password_context(mailbox.id))
                // Our configuration, not the mailbox, is at fault: keep the mailbox usable.
                .map_err(|_| Outcome::Retry {
                    error: "the mailbox's SMTP password cannot be decrypted with \
                            security.encryption_keys"
                        .to_owned(),
                })?;
            Some(Login {
                method: domain::mail::LoginMethod::Password,
                username: username.clone(),
                password,
            })
        }
        _ => None,
    };
    Ok(MailboxServer {
        mailbox_id: mailbox.id,
        server: Server {
            host: mailbox.smtp_host.clone(),
            port,
            security,
        },
        login,
    })
}

#[cfg(test)]
mod tests;
