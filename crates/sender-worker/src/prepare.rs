//! Decides, for a claimed message, whether it is still to be sent, and if so gathers its
//! email, SMTP envelope and server. Pure apart from decrypting the mailbox password.

use chrono::{DateTime, Utc};
use domain::crypto::SecretCipher;
use domain::db::mailboxes::smtp_password_context;
use domain::db::sending::{ClaimedMessage, ThreadEmail};
use domain::mail::{Login, Security, Server};
use domain::templates::ContactFields;
use lettre::address::{Address, Envelope};

use crate::compose::{Email, Party, Thread, Tracking};
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

/// What preparing needs besides the message.
pub struct Context<'a> {
    pub cipher: &'a SecretCipher,
    /// The tracker's public URL, for sequences and workspaces without their own.
    pub tracker_url: &'a str,
    pub now: DateTime<Utc>,
}

/// The identifiers the outcome of `message` is recorded with.
pub fn facts(message: &ClaimedMessage) -> MessageFacts {
    MessageFacts {
        id: message.id,
        workspace_id: message.workspace_id,
        enrollment_id: message.enrollment_id,
        mailbox_id: message.mailbox_id,
        step_order: message.step_order,
        attempts: message.attempts,
        message_id_header: message_id_header(message),
    }
}

/// `thread` holds the enrollment's emails sent so far (any order of enrollments is fine:
/// only this message's enrollment is used), oldest step first.
pub fn prepare(message: &ClaimedMessage, thread: &[ThreadEmail], context: &Context) -> Verdict {
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
    if message.mailbox_status != "active" {
        return Verdict::Skip(Outcome::Retry {
            error: format!("the mailbox is {}", message.mailbox_status),
        });
    }
    if message.sequence_status != "active" {
        return Verdict::Skip(Outcome::Retry {
            error: format!("the sequence is {}", message.sequence_status),
        });
    }
    let envelope = match envelope(message) {
        Ok(envelope) => envelope,
        Err(reason) => return Verdict::Skip(Outcome::Failed { reason }),
    };
    let server = match server(message, context.cipher) {
        Ok(server) => server,
        Err(outcome) => return Verdict::Skip(outcome),
    };
    Verdict::Send(Box::new(Prepared {
        email: email(message, thread, context),
        envelope,
        server,
        oauth: message.oauth,
    }))
}

fn email(message: &ClaimedMessage, thread: &[ThreadEmail], context: &Context) -> Email {
    Email {
        from: Party {
            address: message.mailbox_email.clone(),
            name: message.mailbox_name.clone(),
        },
        to: Party {
            address: message.contact_email.clone(),
            name: full_name(message),
        },
        subject: message.subject_source.clone(),
        content: message.content_source.clone(),
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
        message_id_header: message_id_header(message),
        date: context.now,
        thread: message
            .thread_with_previous
            .then(|| thread_of(message, thread))
            .flatten(),
        tracking: Tracking {
            open: message.open_tracking,
            click: message.click_tracking,
            url_text_links: message.track_url_text_links,
            base_url: tracking_base_url(message, context.tracker_url),
            unsubscribe_link: message.unsubscribe_link,
            unsubscribe_mailto: message.unsubscribe_mailto.clone(),
        },
    }
}

/// The earlier emails of the message's enrollment, as the thread it replies in.
fn thread_of(message: &ClaimedMessage, emails: &[ThreadEmail]) -> Option<Thread> {
    let earlier: Vec<&ThreadEmail> = emails
        .iter()
        .filter(|e| e.enrollment_id == message.enrollment_id)
        .filter(|e| e.step_order < message.step_order && e.message_id != message.id)
        .collect();
    let first = earlier.iter().min_by_key(|e| e.step_order)?;
    let mut ordered = earlier.clone();
    ordered.sort_by_key(|e| e.step_order);
    Some(Thread {
        first_subject: first.subject_source.clone(),
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
fn tracking_base_url(message: &ClaimedMessage, tracker_url: &str) -> String {
    let domain = message
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
    message
        .workspace_tracking_base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(tracker_url)
        .to_owned()
}

fn message_id_header(message: &ClaimedMessage) -> String {
    message.message_id_header.clone().unwrap_or_else(|| {
        let domain = message
            .mailbox_email
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        format!("<{}@{domain}>", message.id)
    })
}

fn envelope(message: &ClaimedMessage) -> Result<Envelope, String> {
    let from: Address = message
        .mailbox_email
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

fn server(message: &ClaimedMessage, cipher: &SecretCipher) -> Result<MailboxServer, Outcome> {
    let security: Security =
        message
            .smtp_security
            .parse()
            .map_err(|e: String| Outcome::MailboxFailing {
                error: format!("the mailbox's SMTP settings are invalid: {e}"),
            })?;
    let port = u16::try_from(message.smtp_port).map_err(|_| Outcome::MailboxFailing {
        error: format!("the mailbox's SMTP port {} is invalid", message.smtp_port),
    })?;
    let login = match (&message.smtp_username, &message.smtp_password_encrypted) {
        _ if message.oauth => None,
        (Some(username), Some(encrypted)) => {
            let password = cipher
                .decrypt(encrypted, &smtp_password_context(message.mailbox_id))
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
        mailbox_id: message.mailbox_id,
        server: Server {
            host: message.smtp_host.clone(),
            port,
            security,
        },
        login,
    })
}

#[cfg(test)]
mod tests;
