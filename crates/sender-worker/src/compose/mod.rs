//! Builds the email of one message: renders subject and body for the contact, adds click and
//! open tracking and the unsubscribe link and headers, threads follow-ups under the first
//! step's email. Pure: no I/O, the time and the tracking base URL come from the caller, so a
//! message composed again (a retry) reads the same.
//!
//! Bodies: a step's content is plain text or HTML (the API accepts both). HTML content,
//! recognised by its tags ([`body::looks_like_html`]), is rendered with
//! `Template::render_html`, which escapes contact values but keeps the author's markup; its
//! text part is laid out from that HTML after click tracking ([`text_part`]: blank lines
//! between blocks, list items as lines, links as `text (url)`). Plain-text content is
//! rendered with `Template::render` for the text part and escaped, linkified and split into
//! paragraphs (blank lines) and `<br>` (single line breaks) for the HTML part. The HTML part
//! is always a complete UTF-8 document ([`document`]). Each part goes `7bit`, as written,
//! when it is ASCII with lines of at most 998 octets, else quoted-printable or base64
//! ([`transfer`]).
//!
//! Click tracking leaves a link whose visible text is a URL or a domain as it is, and bare
//! URLs unlinked, in both parts, unless the sequence sets `track_url_text_links`: then bare
//! URLs are linked and every `http(s)` link is tracked, in both parts.

mod body;
mod document;
mod headers;
mod html;
mod links;
mod source;
mod text_part;
mod transfer;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use domain::templates::{ContactFields, Template, TemplateError, seed_from_uuid};
use domain::tracking_token::{TokenSigner, TrackingAction};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use uuid::Uuid;

pub use source::Source;

/// Everything one message's email is made of.
#[derive(Debug, Clone)]
pub struct Email {
    pub from: Party,
    pub to: Party,
    /// Templates of the step, or of the A/B variant chosen for this message.
    pub subject: Source,
    pub content: Source,
    pub contact: ContactFields,
    /// Seeds the spintax choices, so composing the same message again reads the same.
    pub message_id: Uuid,
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    /// The `Message-ID` header assigned to the message, e.g. `<uuid@example.com>`.
    pub message_id_header: String,
    /// The `Date` header, from the caller's clock.
    pub date: DateTime<Utc>,
    /// Set for a follow-up sent as a reply in the first step's thread.
    pub thread: Option<Thread>,
    pub tracking: Tracking,
}

/// A mailbox: an address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub address: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Template of the first step's subject (of its chosen variant).
    pub first_subject: Source,
    /// The first step's message: its id seeds the subject's spintax, so `Re:` repeats the
    /// subject the contact actually received.
    pub first_message_id: Uuid,
    /// `Message-ID`s of the thread's earlier emails, oldest first.
    pub references: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub open: bool,
    pub click: bool,
    /// Click tracking also rewrites links whose visible text is a URL or a domain, and links
    /// bare URLs to track them; otherwise those are left as written (filters score a tracker
    /// URL behind a visible URL as a spoofed link).
    pub url_text_links: bool,
    /// Where the tracker serves `/o/`, `/c/` and `/u/`, e.g. `https://track.example.com`.
    pub base_url: String,
    /// A short unsubscribe link at the end of both bodies. The `List-Unsubscribe` headers are
    /// always set.
    pub unsubscribe_link: bool,
    /// An address (`mailto:` optional) offered in `List-Unsubscribe` besides the URL.
    pub unsubscribe_mailto: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("the {part} template does not parse")]
    Template {
        part: &'static str,
        #[source]
        source: TemplateError,
    },
    #[error("the {field} address does not parse")]
    InvalidAddress {
        field: &'static str,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("the tracking base URL must be an http(s) URL without spaces or quotes")]
    InvalidTrackingBaseUrl,
    #[error("the unsubscribe mailto address must not contain spaces, brackets or controls")]
    InvalidUnsubscribeMailto,
    #[error("the message could not be built")]
    Build(#[from] lettre::error::Error),
    /// A variable without a fallback has no value for this contact: the message is held.
    #[error("missing_variable: {name}")]
    MissingVariable { name: String },
}

/// The email of `email`, ready for SMTP.
pub fn compose(email: &Email, signer: &TokenSigner) -> Result<Message, ComposeError> {
    compose_with_subject(email, signer).map(|(_, message)| message)
}

/// [`compose`], with the subject it put in the email (as [`subject`] says it).
pub fn compose_with_subject(
    email: &Email,
    signer: &TokenSigner,
) -> Result<(String, Message), ComposeError> {
    let base = headers::tracking_base(&email.tracking.base_url)?;
    let seed = seed_from_uuid(email.message_id);
    let tokens = Tokens {
        email,
        signer,
        base: &base,
    };

    let subject = render_subject(email, seed)?;
    let content = template(&email.content, "content")?;
    complete(content, email, seed)?;
    // Tokens are deterministic: a URL linked in both parts is signed once.
    let signed: RefCell<Vec<(String, Option<String>)>> = RefCell::new(Vec::new());
    let click = |url: &str| {
        if let Some((_, tracked)) = signed.borrow().iter().find(|(signed, _)| signed == url) {
            return tracked.clone();
        }
        let tracked = tokens.click(url);
        signed.borrow_mut().push((url.to_owned(), tracked.clone()));
        tracked
    };
    let url_text_links = email.tracking.url_text_links;
    let (mut text, mut html) = if email.content.is_html() {
        let mut html = content.render_html(&email.contact, seed);
        if email.tracking.click {
            if url_text_links {
                html = links::linkify_html(&html);
            }
            html = links::rewrite_html(&html, url_text_links, click);
        }
        // From the tracked HTML, so both parts link to the same (tracked or not) URLs.
        (text_part::html_to_text(&html), document::document(&html))
    } else {
        let mut text = content.render(&email.contact, seed);
        // Every link of this HTML shows its URL: tracked only when the sequence says so.
        let html = if email.tracking.click {
            let html = body::text_to_html_with(&text, |url| {
                (url_text_links || !links::looks_like_url(url))
                    .then(|| click(url))
                    .flatten()
            });
            if url_text_links {
                text = links::rewrite_text(&text, click);
            }
            html
        } else {
            body::text_to_html(&text)
        };
        (text, document::fragment(&html))
    };
    if email.tracking.click {
        // A link no person sees: what follows it is a scanner, and the tracker says so.
        let trap = tokens.url("c", &tokens.action(Kind::Trap));
        html = body::append_html(&html, &body::trap_link(&trap));
    }
    let unsubscribe_url = tokens.url("u", &tokens.action(Kind::Unsubscribe));
    if email.tracking.unsubscribe_link {
        text = body::append_text_footer(&text, &unsubscribe_url);
        html = body::append_html(&html, &body::html_footer(&unsubscribe_url));
    }
    if email.tracking.open {
        let pixel = tokens.url("o", &tokens.action(Kind::Open));
        html = body::append_html(&html, &body::pixel(&pixel));
    }

    let (from, to) = (mailbox(&email.from, "from")?, mailbox(&email.to, "to")?);
    // Given, so lettre does not parse it back out of the From and To headers it formatted.
    let envelope = Envelope::new(Some(from.email.clone()), vec![to.email.clone()])?;
    let mut builder = Message::builder()
        .envelope(envelope)
        .from(from)
        .to(to)
        .subject(subject.clone())
        .message_id(Some(headers::normalise(&email.message_id_header)))
        .date(SystemTime::from(email.date))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            headers::list_unsubscribe(
                &unsubscribe_url,
                email.tracking.unsubscribe_mailto.as_deref(),
            )?,
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    if let Some(thread) = &email.thread {
        let references: Vec<String> = thread
            .references
            .iter()
            .map(|id| headers::normalise(id))
            .filter(|id| !id.is_empty())
            .collect();
        if let Some(last) = references.last() {
            builder = builder
                .in_reply_to(last.clone())
                .references(references.join(" "));
        }
    }
    let message = builder.multipart(
        MultiPart::alternative()
            .singlepart(transfer::part(ContentType::TEXT_PLAIN, text))
            .singlepart(transfer::part(ContentType::TEXT_HTML, html)),
    )?;
    Ok((subject, message))
}

/// [`compose`], formatted as the bytes sent over SMTP (CRLF line endings).
pub fn compose_bytes(email: &Email, signer: &TokenSigner) -> Result<Vec<u8>, ComposeError> {
    compose(email, signer).map(|message| message.formatted())
}

/// The subject `compose` puts in the email (rendered, `Re:` for a threaded follow-up), as
/// stored with the sent message.
pub fn subject(email: &Email) -> Result<String, ComposeError> {
    render_subject(email, seed_from_uuid(email.message_id))
}

fn template<'a>(source: &'a Source, part: &'static str) -> Result<&'a Template, ComposeError> {
    source.template().map_err(|error| ComposeError::Template {
        part,
        source: error.clone(),
    })
}

fn render_subject(email: &Email, seed: u64) -> Result<String, ComposeError> {
    match &email.thread {
        None => {
            let subject = template(&email.subject, "subject")?;
            complete(subject, email, seed)?;
            Ok(headers::normalise(&subject.render(&email.contact, seed)))
        }
        Some(thread) => {
            let first_seed = seed_from_uuid(thread.first_message_id);
            let first = template(&thread.first_subject, "first subject")?;
            complete(first, email, first_seed)?;
            let first = first.render(&email.contact, first_seed);
            Ok(headers::reply_subject(&headers::normalise(&first)))
        }
    }
}

/// `Err` naming the first variable without a fallback that rendering `template` with `seed`
/// would leave empty: an email never goes out with a hole in it.
fn complete(template: &Template, email: &Email, seed: u64) -> Result<(), ComposeError> {
    match template.missing_variable(&email.contact, seed) {
        Some(name) => Err(ComposeError::MissingVariable { name }),
        None => Ok(()),
    }
}

fn mailbox(party: &Party, field: &'static str) -> Result<Mailbox, ComposeError> {
    let address = party
        .address
        .trim()
        .parse()
        .map_err(|source| ComposeError::InvalidAddress { field, source })?;
    let name = party
        .name
        .as_deref()
        .map(headers::normalise)
        .filter(|name| !name.is_empty());
    Ok(Mailbox::new(name, address))
}

#[derive(Clone, Copy)]
enum Kind {
    Open,
    Unsubscribe,
    Trap,
}

/// Signs the tracking URLs of one message.
struct Tokens<'a> {
    email: &'a Email,
    signer: &'a TokenSigner,
    base: &'a str,
}

impl Tokens<'_> {
    fn action(&self, kind: Kind) -> TrackingAction {
        let (workspace_id, enrollment_id, message_id) = self.ids();
        match kind {
            Kind::Open => TrackingAction::Open {
                workspace_id,
                enrollment_id,
                message_id,
            },
            Kind::Unsubscribe => TrackingAction::Unsubscribe {
                workspace_id,
                enrollment_id,
                message_id,
            },
            Kind::Trap => TrackingAction::Trap {
                workspace_id,
                enrollment_id,
                message_id,
            },
        }
    }

    /// The tracked URL of a link, or `None` to leave a link too long for a token as it is.
    fn click(&self, url: &str) -> Option<String> {
        if url.len() > domain::tracking_token::MAX_URL_BYTES {
            return None;
        }
        let (workspace_id, enrollment_id, message_id) = self.ids();
        let action = TrackingAction::Click {
            workspace_id,
            enrollment_id,
            message_id,
            url: url.to_owned(),
        };
        Some(self.url("c", &action))
    }

    fn url(&self, path: &str, action: &TrackingAction) -> String {
        format!(
            "{}/{path}/{}",
            self.base,
            self.signer.encode(action, self.email.date)
        )
    }

    fn ids(&self) -> (Uuid, Uuid, Uuid) {
        (
            self.email.workspace_id,
            self.email.enrollment_id,
            self.email.message_id,
        )
    }
}
