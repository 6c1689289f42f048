//! Classification of inbound messages fetched from a sales person's inbox.
//!
//! The watcher hands us raw RFC 5322 bytes (possibly truncated at 512 KiB). We decide, from the
//! message's own bytes only, whether it is a bounce, an automatic answer or a personal message,
//! and we extract the Message-IDs it refers to so that the caller can match them against the
//! Message-IDs of the emails we sent. Nothing here touches a database, and nothing here panics on
//! input data: a message we cannot parse is reported as [`Kind::Personal`] with whatever fields
//! could be read, because the caller only acts on messages that reference something of ours.
//!
//! Rules, first match wins:
//!
//! 1. **Bounce.**
//!    * Standard delivery status notifications (RFC 3464): a `message/delivery-status` part
//!      (or `message/global-delivery-status`, RFC 6533), usually inside a `multipart/report;
//!      report-type=delivery-status`. Every per-recipient block is read; recipients whose
//!      `Action` is `delivered`, `relayed` or `expanded` are successes and are skipped. A report
//!      whose recipients all succeeded is not a bounce but
//!      `Ignored { reason: "delivery report" }`.
//!    * Non-standard bounces (Exim, Gmail, Exchange's human-readable text, ...): the sender is
//!      `mailer-daemon@` / `postmaster@`, or `X-Failed-Recipients` is present, or the subject is a
//!      typical bounce subject, or the message claims to be a delivery report without a readable
//!      status part — *and* the text contains an SMTP (`550`) or enhanced (`5.1.1`) status code.
//!      Any 5xx / 5.x.x code makes it hard, otherwise 4xx / 4.x.x makes it soft. Without a code
//!      we do not call it a bounce, because a signal alone is too weak (e.g. a postmaster
//!      writing a personal answer).
//! 2. **Automatic reply** (RFC 3834 and the de-facto headers that predate it): `Auto-Submitted`
//!    other than `no`; `X-Autoreply` / `X-Autorespond` / `X-Autoresponder`;
//!    `X-Auto-Response-Suppress` together with an automatic subject; `Precedence` /
//!    `X-Precedence` of `auto_reply`, `bulk`, `junk` or `list`; an empty `Return-Path: <>`; a
//!    subject containing a known out-of-office phrase in one of several languages. Also (an
//!    addition to the brief) a read receipt, `multipart/report;
//!    report-type=disposition-notification` (RFC 8098), reason "read receipt".
//! 3. Otherwise **personal**.
//!
//! The original Message-ID of a bounced message is looked up, in this order, in a returned
//! `message/rfc822` (or `message/global`) part, in a `Message-ID:` line of a returned
//! `text/rfc822-headers` part or of any other text part, and finally in the bounce's own
//! `In-Reply-To` / `References`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;

use mail_parser::{HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// What an inbound message is, as far as its own bytes tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Its own Message-ID, normalised as `<local@domain>` (angle brackets, trimmed, no
    /// whitespace), if any.
    pub message_id: Option<String>,
    /// The From address, lowercased (just the addr-spec), if parseable.
    pub from: Option<String>,
    /// The Subject as decoded text (RFC 2047 decoded, surrounding whitespace trimmed), if any.
    pub subject: Option<String>,
    /// Message-IDs this message refers to: In-Reply-To first, then References from last (newest)
    /// to first, deduplicated, each normalised as `<...>`.
    pub references: Vec<String>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Written by a person (a candidate reply).
    Personal,
    /// An automatic answer (out of office, autoresponder): `reason` names the rule that matched,
    /// e.g. "Auto-Submitted: auto-replied", "X-Autoreply", "Precedence: bulk",
    /// "subject: Automatic reply", "read receipt".
    AutoReply { reason: String },
    /// A delivery status notification or other non-delivery report; one entry per
    /// failed/delayed recipient (at least one).
    Bounce(Vec<Bounce>),
    /// A spam complaint: an RFC 5965 feedback report (ARF) from a mailbox provider's feedback
    /// loop, of any feedback type but `not-spam`.
    Complaint(Complaint),
    /// A machine report that means nothing for a sequence: "delivery report" (a DSN where every
    /// recipient succeeded), "feedback report: not-spam".
    Ignored { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// `Feedback-Type`, lowercased (abuse, fraud, virus, other, ...), if given.
    pub feedback_type: Option<String>,
    /// The complaining recipient (`Original-Rcpt-To`, lowercased), if the provider reveals it
    /// (many redact it).
    pub recipient: Option<String>,
    /// The Message-ID of the reported message (ours), from the attached message or headers,
    /// else the report's own references.
    pub original_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The recipient that failed, lowercased addr-spec (from Final-Recipient, else
    /// Original-Recipient, else X-Failed-Recipients, else best effort from the text), if known.
    pub recipient: Option<String>,
    /// True for a permanent failure (Status 5.x.x, or Action: failed with no status, or an SMTP
    /// 5xx code in a non-standard bounce); false for transient (4.x.x, Action: delayed).
    pub hard: bool,
    /// The enhanced status code, e.g. "5.1.1", if any. For a DSN without a `Status` field it is
    /// taken from the Diagnostic-Code when one is there.
    pub status: Option<String>,
    /// Diagnostic-Code text (without the "smtp;" type prefix), trimmed and at most 500 chars, if
    /// any. For a non-standard bounce it is the text line carrying the status code.
    pub diagnostic: Option<String>,
    /// The Message-ID of the message that bounced (ours), normalised `<...>`, taken from the
    /// returned message/rfc822 or text/rfc822-headers part, or from a `Message-ID:` line inside
    /// the text, or from the bounce's own In-Reply-To/References, if any.
    pub original_message_id: Option<String>,
}

/// Longest diagnostic we keep; remote servers sometimes return whole HTML pages.
const MAX_DIAGNOSTIC_CHARS: usize = 500;

/// Classify raw message bytes. Never fails: an unparseable message gives [`Kind::Personal`] with
/// whatever fields could be read.
pub fn classify(raw: &[u8]) -> Inbound {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Inbound {
            message_id: None,
            from: None,
            subject: None,
            references: Vec::new(),
            kind: Kind::Personal,
        };
    };
    let message_id = message.message_id().and_then(normalize_message_id);
    let from = from_address(&message);
    let subject = message.subject().map(|s| s.trim().to_string());
    let references = collect_references(&message);
    let kind = complaint_kind(&message, &references)
        .or_else(|| bounce_kind(&message, from.as_deref(), subject.as_deref(), &references))
        .or_else(|| auto_reply_reason(&message, subject.as_deref()))
        .unwrap_or(Kind::Personal);
    Inbound {
        message_id,
        from,
        subject,
        references,
        kind,
    }
}

/// Normalise a Message-ID to `<id>`: trims, drops RFC 5322 comments outside the brackets,
/// collapses any number of surrounding angle brackets into exactly one pair. Returns `None` for
/// an empty id or one containing whitespace or stray brackets (most likely several ids or junk).
pub fn normalize_message_id(s: &str) -> Option<String> {
    let without_comments = strip_comments(s);
    let inner = without_comments
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let invalid = |c: char| c.is_whitespace() || c == '<' || c == '>';
    if inner.is_empty() || inner.contains(invalid) {
        return None;
    }
    Some(format!("<{inner}>"))
}

/// The subject that identifies a thread: reply/forward prefixes and leading bracketed tags
/// removed repeatedly, whitespace collapsed, lowercased.
pub fn thread_subject(subject: &str) -> String {
    let mut rest = subject.to_lowercase();
    loop {
        let trimmed = rest.trim_start();
        let stripped = strip_bracket_tag(trimmed).or_else(|| strip_reply_prefix(trimmed));
        match stripped {
            Some(next) => rest = next.to_string(),
            None => break,
        }
    }
    rest.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// Message-IDs and headers
// ---------------------------------------------------------------------------------------------

/// Remove `( ... )` comments (nesting allowed) that are not inside `<...>`; some clients append
/// "(added by postmaster@...)" style comments to In-Reply-To.
fn strip_comments(s: &str) -> Cow<'_, str> {
    if !s.contains('(') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut in_brackets = false;
    for c in s.chars() {
        match c {
            '(' if !in_brackets => depth += 1,
            ')' if !in_brackets && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '<' => {
                in_brackets = true;
                out.push(c);
            }
            '>' => {
                in_brackets = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn header_ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => normalize_message_id(id).into_iter().collect(),
        HeaderValue::TextList(ids) => ids
            .iter()
            .filter_map(|id| normalize_message_id(id))
            .collect(),
        _ => Vec::new(),
    }
}

/// In-Reply-To names the direct parent, so it goes first; References is oldest-first, so we
/// reverse it to try the most recent ancestors before older ones.
fn collect_references(message: &Message<'_>) -> Vec<String> {
    let mut refs = header_ids(message.in_reply_to());
    let mut older = header_ids(message.references());
    older.reverse();
    for id in older {
        if !refs.contains(&id) {
            refs.push(id);
        }
    }
    refs.dedup();
    refs
}

fn from_address(message: &Message<'_>) -> Option<String> {
    let address = message.from()?.first()?.address()?;
    let address = address.trim().to_lowercase();
    (!address.is_empty()).then_some(address)
}

/// The unfolded, whitespace-collapsed value of the first top-level header called `name`. We read
/// the raw bytes because mail-parser keeps unknown headers raw anyway and we want one uniform
/// representation for known and unknown names alike.
fn raw_header(message: &Message<'_>, name: &str) -> Option<String> {
    let header = message
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))?;
    let bytes = message
        .raw_message
        .get(header.offset_start() as usize..header.offset_end() as usize)?;
    Some(collapse_whitespace(&String::from_utf8_lossy(bytes)))
}

fn has_header(message: &Message<'_>, name: &str) -> bool {
    message
        .headers()
        .iter()
        .any(|h| h.name().eq_ignore_ascii_case(name))
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// Subjects
// ---------------------------------------------------------------------------------------------

/// Reply/forward markers in the languages our customers' prospects write in, lowercased.
/// "r" (Italian) and "tr" (French "transféré") are short but only count when followed by ':'.
const REPLY_PREFIXES: &[&str] = &[
    "antw", "réf", "ref", "fwd", "fw", "re", "aw", "wg", "sv", "vs", "rif", "tr", "res", "enc",
    "odp", "r",
];

/// `re:`, `re[2]:`, `re(2):`, `réf. :` and similar; returns what follows the colon.
fn strip_reply_prefix(s: &str) -> Option<&str> {
    REPLY_PREFIXES.iter().find_map(|prefix| {
        let rest = s.strip_prefix(prefix)?;
        let rest = skip_reply_counter(rest);
        let rest = rest.strip_prefix('.').unwrap_or(rest).trim_start();
        rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
    })
}

/// Skips the `[2]` / `(2)` counters some clients add to "Re".
fn skip_reply_counter(s: &str) -> &str {
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(inner) = s.strip_prefix(open)
            && let Some(end) = inner.find(close)
            && inner[..end].chars().all(|c| c.is_ascii_digit())
        {
            return &inner[end + close.len_utf8()..];
        }
    }
    s
}

/// Leading `[EXTERNAL]`, `[list-name]` tags added by gateways and mailing lists.
fn strip_bracket_tag(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    Some(&inner[end + 1..])
}

/// Subjects of non-standard bounces, lowercased; matched anywhere in the subject.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail returned to sender",
    "delivery status notification",
    "mail delivery failed",
    "mail delivery failure",
    "undeliverable",
    "undelivered mail",
    "delivery failure",
    "delivery has failed",
    "returned mail",
    "failure notice",
    "unzustellbar",
    "nicht zustellbar",
    "non remis",
];

/// Out-of-office / autoresponder phrases; matched case-insensitively as whole words anywhere in
/// the subject. The reason reports the phrase as written here.
const AUTO_SUBJECTS: &[&str] = &[
    "Out of Office",
    "Out of the office",
    "Automatic reply",
    "Auto:",
    "Autoreply",
    "Auto-reply",
    "Auto Reply",
    "Abwesenheitsnotiz",
    "Automatische Antwort",
    "Réponse automatique",
    "Absence",
    "Respuesta automática",
    "Fuera de la oficina",
    "Risposta automatica",
    "Fuori sede",
    "Afwezig",
    "Automatisch antwoord",
    "Frånvaro",
    "Autosvar",
    "Resposta automática",
    "Ausente",
];

/// True when `needle` occurs in `haystack` as whole words, so "Absence" does not fire inside
/// "Absences" or "Nonabsence". Both are expected lowercased.
fn contains_words(haystack: &str, needle: &str) -> bool {
    let needs_end_boundary = needle
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    haystack.match_indices(needle).any(|(i, m)| {
        let starts_word = haystack[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let ends_word = !needs_end_boundary
            || haystack[i + m.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric());
        starts_word && ends_word
    })
}

fn auto_subject_phrase(subject: &str) -> Option<&'static str> {
    let lower = subject.to_lowercase();
    AUTO_SUBJECTS
        .iter()
        .copied()
        .find(|phrase| contains_words(&lower, &phrase.to_lowercase()))
}

fn is_bounce_subject(subject: &str) -> bool {
    let lower = subject.to_lowercase();
    BOUNCE_SUBJECTS.iter().any(|s| lower.contains(s))
}

// ---------------------------------------------------------------------------------------------
// Automatic replies (RFC 3834)
// ---------------------------------------------------------------------------------------------

fn auto_reply_reason(message: &Message<'_>, subject: Option<&str>) -> Option<Kind> {
    let reason = auto_submitted(message)
        .or_else(|| autoreply_header(message))
        .or_else(|| read_receipt(message))
        .or_else(|| suppress_with_subject(message, subject))
        .or_else(|| precedence(message, "Precedence"))
        .or_else(|| precedence(message, "X-Precedence"))
        .or_else(|| empty_return_path(message))
        .or_else(|| {
            subject
                .and_then(auto_subject_phrase)
                .map(|p| format!("subject: {p}"))
        })?;
    Some(Kind::AutoReply { reason })
}

/// RFC 8098 read receipts are generated by the recipient's client, not written by the person.
fn read_receipt(message: &Message<'_>) -> Option<String> {
    is_report_of(message, "disposition-notification").then(|| "read receipt".to_string())
}

/// RFC 3834 section 5: any value other than "no" marks an automatic message.
fn auto_submitted(message: &Message<'_>) -> Option<String> {
    let value = raw_header(message, "Auto-Submitted")?;
    // "auto-replied; owner-email=..." or "auto-replied (vacation)": the keyword is the first token.
    let keyword = value
        .split([';', '(', ' '])
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    (!keyword.is_empty() && keyword != "no").then(|| format!("Auto-Submitted: {keyword}"))
}

fn autoreply_header(message: &Message<'_>) -> Option<String> {
    ["X-Autoreply", "X-Autorespond", "X-Autoresponder"]
        .into_iter()
        .find(|name| has_header(message, name))
        .map(str::to_string)
}

/// Outlook sets `X-Auto-Response-Suppress` on its own automatic replies (and on some normal
/// mail), so it only counts together with an automatic-looking subject.
fn suppress_with_subject(message: &Message<'_>, subject: Option<&str>) -> Option<String> {
    if !has_header(message, "X-Auto-Response-Suppress") {
        return None;
    }
    let phrase = auto_subject_phrase(subject?)?;
    Some(format!("X-Auto-Response-Suppress + subject: {phrase}"))
}

fn precedence(message: &Message<'_>, name: &str) -> Option<String> {
    let value = raw_header(message, name)?.to_lowercase();
    ["auto_reply", "bulk", "junk", "list"]
        .into_iter()
        .find(|v| value == *v)
        .map(|v| format!("{name}: {v}"))
}

/// An empty reverse path is what RFC 3834 asks automatic responders to use; bounces use it too,
/// but those were handled before we get here.
fn empty_return_path(message: &Message<'_>) -> Option<String> {
    let value = raw_header(message, "Return-Path")?;
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    (compact == "<>").then(|| "Return-Path: <>".to_string())
}

// ---------------------------------------------------------------------------------------------
// Bounces
// ---------------------------------------------------------------------------------------------

fn bounce_kind(
    message: &Message<'_>,
    from: Option<&str>,
    subject: Option<&str>,
    references: &[String],
) -> Option<Kind> {
    // Only bounces need it, and finding it may scan every text part.
    let original = || original_message_id(message).or_else(|| references.first().cloned());
    let failed_recipients = failed_recipients(message);
    if let Some(report) = read_delivery_status(message)
        && report.blocks > 0
    {
        if report.failures.is_empty() {
            return Some(Kind::Ignored {
                reason: "delivery report".to_string(),
            });
        }
        let original = original();
        let bounces = report
            .failures
            .into_iter()
            .enumerate()
            .map(|(i, f)| f.into_bounce(i, &failed_recipients, original.clone()))
            .collect();
        return Some(Kind::Bounce(bounces));
    }
    if !has_bounce_signal(message, from, subject, &failed_recipients) {
        return None;
    }
    nonstandard_bounce(message, &failed_recipients, original).map(Kind::Bounce)
}

fn has_bounce_signal(
    message: &Message<'_>,
    from: Option<&str>,
    subject: Option<&str>,
    failed_recipients: &[String],
) -> bool {
    let daemon_sender = from
        .and_then(|f| f.split('@').next())
        .is_some_and(|local| local == "mailer-daemon" || local == "postmaster");
    daemon_sender
        || !failed_recipients.is_empty()
        || has_header(message, "X-Failed-Recipients")
        || subject.is_some_and(is_bounce_subject)
        || is_report_container(message)
}

/// `multipart/report; report-type=delivery-status` at the top: a DSN whose status part we could
/// not read (e.g. truncated) is still a strong bounce signal.
fn is_report_container(message: &Message<'_>) -> bool {
    is_report_of(message, "delivery-status")
}

/// An RFC 5965 feedback report: `multipart/report; report-type=feedback-report` with a
/// `message/feedback-report` part of header-like fields. Checked before bounces, since a
/// report from an abuse desk may also look like one.
fn complaint_kind(message: &Message<'_>, references: &[String]) -> Option<Kind> {
    if !is_report_of(message, "feedback-report") {
        return None;
    }
    let fields: Vec<(String, String)> = message
        .parts
        .iter()
        .filter(|p| part_has_type(p, "message", &["feedback-report"]))
        .flat_map(|p| header_blocks(&String::from_utf8_lossy(p.contents())))
        .flatten()
        .collect();
    let feedback_type = field(&fields, "feedback-type").map(str::to_ascii_lowercase);
    if feedback_type.as_deref() == Some("not-spam") {
        return Some(Kind::Ignored {
            reason: "feedback report: not-spam".to_string(),
        });
    }
    Some(Kind::Complaint(Complaint {
        feedback_type,
        recipient: field(&fields, "original-rcpt-to").and_then(clean_address),
        original_message_id: original_message_id(message).or_else(|| references.first().cloned()),
    }))
}

/// Top-level `multipart/report` whose report-type contains `kind` (so "delivery-status" also
/// matches RFC 6533's "global-delivery-status").
fn is_report_of(message: &Message<'_>, kind: &str) -> bool {
    message.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.to_ascii_lowercase().contains(kind))
    })
}

fn failed_recipients(message: &Message<'_>) -> Vec<String> {
    let Some(value) = raw_header(message, "X-Failed-Recipients") else {
        return Vec::new();
    };
    value
        .split([',', ' ', ';'])
        .filter_map(clean_address)
        .collect()
}

/// `<Foo@Example.COM>` → `foo@example.com`; `None` unless it looks like an addr-spec.
fn clean_address(s: &str) -> Option<String> {
    let s = s
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (s.contains('@') && !s.contains(char::is_whitespace)).then(|| s.to_lowercase())
}

fn part_has_type(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|st| subtypes.iter().any(|s| st.eq_ignore_ascii_case(s)))
    })
}

fn is_delivery_status_part(part: &MessagePart<'_>) -> bool {
    part_has_type(
        part,
        "message",
        &["delivery-status", "global-delivery-status"],
    )
}

/// A returned header block: RFC 3462 `text/rfc822-headers` or RFC 6533 `message/global-headers`.
fn is_returned_headers_part(part: &MessagePart<'_>) -> bool {
    part_has_type(part, "text", &["rfc822-headers"])
        || part_has_type(part, "message", &["global-headers", "rfc822-headers"])
}

// --- RFC 3464 / RFC 6533 delivery-status ------------------------------------------------------

/// What the delivery-status part(s) of a report said.
struct DeliveryReport {
    /// Per-recipient blocks seen, successes included.
    blocks: usize,
    failures: Vec<Failure>,
}

/// One failed or delayed recipient from a delivery-status block.
struct Failure {
    recipient: Option<String>,
    hard: bool,
    status: Option<String>,
    diagnostic: Option<String>,
}

impl Failure {
    fn into_bounce(self, index: usize, failed: &[String], original: Option<String>) -> Bounce {
        // X-Failed-Recipients lists recipients in the same order as the blocks when both exist.
        let recipient = self
            .recipient
            .or_else(|| failed.get(index).or(failed.first()).cloned());
        Bounce {
            recipient,
            hard: self.hard,
            status: self.status,
            diagnostic: self.diagnostic,
            original_message_id: original,
        }
    }
}

/// Reads every delivery-status part. mail-parser exposes `message/delivery-status` as a binary
/// attachment (it only nests `message/rfc822` and `message/global`), so we read the decoded
/// contents of whatever it gives.
fn read_delivery_status(message: &Message<'_>) -> Option<DeliveryReport> {
    let mut found = false;
    let mut report = DeliveryReport {
        blocks: 0,
        failures: Vec::new(),
    };
    for part in message.parts.iter().filter(|p| is_delivery_status_part(p)) {
        found = true;
        let text = String::from_utf8_lossy(part.contents());
        for block in header_blocks(&text) {
            if let Some(outcome) = recipient_outcome(&block) {
                report.blocks += 1;
                report.failures.extend(outcome);
            }
        }
    }
    found.then_some(report)
}

/// Splits a delivery-status body into blocks of `(lowercased name, unfolded value)` fields.
fn header_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `None` when the block is not a per-recipient block; `Some(None)` for a successful recipient;
/// `Some(Some(failure))` for a failed or delayed one.
fn recipient_outcome(block: &[(String, String)]) -> Option<Option<Failure>> {
    let final_recipient = field(block, "final-recipient");
    let original_recipient = field(block, "original-recipient");
    let action = field(block, "action").map(|a| {
        let word = a.split([' ', '(']).next().unwrap_or_default();
        word.to_ascii_lowercase()
    });
    if final_recipient.is_none() && original_recipient.is_none() && action.is_none() {
        return None;
    }
    let diagnostic = field(block, "diagnostic-code").and_then(clean_diagnostic);
    let status = field(block, "status")
        .and_then(|s| first_enhanced_code(s, &['2', '4', '5']))
        .or_else(|| {
            diagnostic
                .as_deref()
                .and_then(|d| first_enhanced_code(d, &['4', '5']))
        });
    let action = action.unwrap_or_default();
    let succeeded = matches!(action.as_str(), "delivered" | "relayed" | "expanded")
        || status.as_deref().is_some_and(|s| s.starts_with('2'));
    if succeeded {
        return Some(None);
    }
    let hard = match status.as_deref().and_then(|s| s.chars().next()) {
        Some('5') => true,
        Some('4') => false,
        _ if action == "delayed" => false,
        _ => diagnostic
            .as_deref()
            .and_then(smtp_reply_class)
            .is_none_or(|class| class == '5'),
    };
    let recipient = final_recipient
        .or(original_recipient)
        .and_then(|r| clean_address(strip_type_prefix(r)));
    Some(Some(Failure {
        recipient,
        hard,
        status,
        diagnostic,
    }))
}

/// `rfc822; a@b` → `a@b`, `smtp; 550 ...` → `550 ...`. Only strips a single-token prefix so
/// that a diagnostic that merely contains ';' is kept whole.
fn strip_type_prefix(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().is_empty() && !kind.trim().contains(' ') => rest.trim(),
        _ => value.trim(),
    }
}

fn clean_diagnostic(value: &str) -> Option<String> {
    let text = collapse_whitespace(strip_type_prefix(value));
    let text: String = text.chars().take(MAX_DIAGNOSTIC_CHARS).collect();
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

// --- Non-standard bounces ---------------------------------------------------------------------

/// The strongest status found in a human-readable bounce text.
struct TextStatus {
    hard: bool,
    status: Option<String>,
    line: usize,
}

fn nonstandard_bounce(
    message: &Message<'_>,
    failed_recipients: &[String],
    original: impl FnOnce() -> Option<String>,
) -> Option<Vec<Bounce>> {
    let text = bounce_text(message);
    let lines: Vec<&str> = text.lines().collect();
    let found = scan_status(&lines)?;
    let original = original();
    let diagnostic = lines.get(found.line).and_then(|l| clean_diagnostic(l));
    let recipients = if failed_recipients.is_empty() {
        vec![recipient_near(&lines, found.line, message)]
    } else {
        failed_recipients.iter().cloned().map(Some).collect()
    };
    let bounces = recipients
        .into_iter()
        .map(|recipient| Bounce {
            recipient,
            hard: found.hard,
            status: found.status.clone(),
            diagnostic: diagnostic.clone(),
            original_message_id: original.clone(),
        })
        .collect();
    Some(bounces)
}

/// The readable text of the bounce itself (not of a returned message): the text bodies mail-parser
/// picked (HTML converted to text when that is all there is) plus any other top-level text part.
fn bounce_text(message: &Message<'_>) -> String {
    let mut text = String::new();
    for i in 0..message.text_body_count() {
        if let Some(body) = message.body_text(i) {
            text.push_str(&body);
            text.push('\n');
        }
    }
    if text.trim().is_empty()
        && let Some(body) = message.root_part().text_contents()
    {
        text.push_str(body);
    }
    text
}

/// Any 5xx / 5.x.x code makes the bounce hard; otherwise the first 4xx / 4.x.x makes it soft.
fn scan_status(lines: &[&str]) -> Option<TextStatus> {
    let mut soft: Option<TextStatus> = None;
    for (index, line) in lines.iter().enumerate() {
        let enhanced = first_enhanced_code(line, &['4', '5']);
        let class = enhanced
            .as_deref()
            .and_then(|c| c.chars().next())
            .or_else(|| smtp_reply_class(line));
        match class {
            Some('5') => {
                let status = enhanced
                    .filter(|c| c.starts_with('5'))
                    .or_else(|| lines.iter().find_map(|l| first_enhanced_code(l, &['5'])));
                return Some(TextStatus {
                    hard: true,
                    status,
                    line: index,
                });
            }
            Some('4') if soft.is_none() => {
                soft = Some(TextStatus {
                    hard: false,
                    status: enhanced,
                    line: index,
                });
            }
            _ => {}
        }
    }
    soft
}

/// First enhanced status code (RFC 3463 `class.subject.detail`) whose class is in `classes`.
/// Codes glued to digits or dots on either side (IP addresses, version numbers) are ignored.
fn first_enhanced_code(text: &str, classes: &[char]) -> Option<String> {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        if !classes.contains(&char::from(b)) {
            return None;
        }
        let before_ok = i == 0
            || bytes
                .get(i - 1)
                .is_some_and(|p| !p.is_ascii_alphanumeric() && *p != b'.');
        if !before_ok {
            return None;
        }
        let len = enhanced_code_len(bytes.get(i..)?)?;
        text.get(i..i + len).map(str::to_string)
    })
}

/// Length of `d.d{1,3}.d{1,3}` at the start of `bytes`, if it is a complete code.
fn enhanced_code_len(bytes: &[u8]) -> Option<usize> {
    let mut pos = 1;
    for _ in 0..2 {
        if bytes.get(pos) != Some(&b'.') {
            return None;
        }
        pos += 1;
        let digits = bytes
            .get(pos..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        pos += digits;
    }
    let next = bytes.get(pos).copied();
    let after = bytes.get(pos + 1).copied();
    let glued = next.is_some_and(|n| n.is_ascii_digit())
        || (next == Some(b'.') && after.is_some_and(|a| a.is_ascii_digit()));
    (!glued).then_some(pos)
}

/// Class ('4' or '5') of the first basic SMTP reply code (`550`, `451-...`) in `text`. The code
/// must stand alone: preceded by start, whitespace or punctuation other than '.', '-', '+', and
/// followed by end, whitespace or '-' + non-digit / '-' + enhanced code (multi-line replies).
fn smtp_reply_class(text: &str) -> Option<char> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|i| {
        let window = bytes.get(i..i + 3)?;
        let is_code = matches!(window, [b'4' | b'5', b'0'..=b'5', b'0'..=b'9']);
        let before_ok = i == 0
            || bytes.get(i - 1).is_some_and(|p| {
                p.is_ascii_whitespace() || matches!(p, b':' | b'(' | b'"' | b'\'' | b'=' | b'#')
            });
        let after_ok = match bytes.get(i + 3) {
            None => true,
            Some(b) if b.is_ascii_whitespace() => true,
            Some(b'-') => bytes.get(i + 4..).is_some_and(|rest| {
                !rest.first().is_some_and(u8::is_ascii_digit) || enhanced_code_len(rest).is_some()
            }),
            _ => false,
        };
        (is_code && before_ok && after_ok).then(|| char::from(window[0]))
    })
}

/// Best effort: the address closest to the status line, skipping daemon addresses and the
/// bounce's own recipients (the sales person), who are mentioned in "your message to ..." texts.
fn recipient_near(lines: &[&str], at: usize, message: &Message<'_>) -> Option<String> {
    let own: Vec<String> = message
        .to()
        .map(|to| {
            to.iter()
                .filter_map(|a| a.address())
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let acceptable = |addr: &String| {
        let local = addr.split('@').next().unwrap_or_default();
        local != "mailer-daemon" && local != "postmaster" && !own.contains(addr)
    };
    let order = (0..=at)
        .rev()
        .chain(at + 1..lines.len())
        .filter_map(|i| lines.get(i));
    order
        .flat_map(|line| addresses_in(line))
        .find(|a| acceptable(a))
}

/// Addr-specs found in free text, lowercased.
fn addresses_in(text: &str) -> Vec<String> {
    let is_local = |c: char| c.is_alphanumeric() || "._%+-=!#$&*/?^`{|}~'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    let mut out = Vec::new();
    for (at, _) in text.match_indices('@') {
        let (before, after) = (&text[..at], &text[at + 1..]);
        let local_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_local(*c))
            .last()
            .map(|(i, _)| i);
        let domain_len: usize = after
            .chars()
            .take_while(|c| is_domain(*c))
            .map(char::len_utf8)
            .sum();
        let (Some(start), true) = (local_start, domain_len > 0) else {
            continue;
        };
        let local = before[start..].trim_start_matches(['.', '\'', '=']);
        let domain = after[..domain_len].trim_end_matches(['.', '-']);
        if !local.is_empty() && domain.contains('.') {
            out.push(format!("{local}@{domain}").to_lowercase());
        }
    }
    out
}

// --- Original Message-ID ----------------------------------------------------------------------

/// Our Message-ID as returned inside the bounce. Returned messages and header blocks are the
/// reliable sources, so they are tried before free text.
fn original_message_id(message: &Message<'_>) -> Option<String> {
    let parts = || message.parts.iter().skip(1);
    parts()
        .find_map(|part| match &part.body {
            PartType::Message(inner) => inner.message_id().and_then(normalize_message_id),
            _ if is_returned_headers_part(part) => {
                message_id_line(&String::from_utf8_lossy(part.contents()))
            }
            _ => None,
        })
        .or_else(|| {
            parts()
                .chain(std::iter::once(message.root_part()))
                .filter(|p| matches!(p.body, PartType::Text(_) | PartType::Html(_)))
                .find_map(|p| p.text_contents().and_then(message_id_line))
        })
}

/// Value of the first `Message-ID:` line in `text`, following one folded continuation line
/// because Outlook and Exchange put long ids on the next line.
fn message_id_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().find_map(|(i, line)| {
        let trimmed = line.trim_start();
        let (name, value) = trimmed.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let value = if value.trim().is_empty() {
            lines.get(i + 1).copied().unwrap_or_default()
        } else {
            value
        };
        let value = strip_html_entities(value);
        let candidate = match (value.find('<'), value.find('>')) {
            (Some(open), Some(close)) if open < close => &value[open..=close],
            _ => value.trim(),
        };
        normalize_message_id(candidate)
    })
}

/// HTML bounces show ids as `&lt;id&gt;`.
fn strip_html_entities(value: &str) -> Cow<'_, str> {
    if value.contains("&lt;") {
        Cow::Owned(value.replace("&lt;", "<").replace("&gt;", ">"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests;
