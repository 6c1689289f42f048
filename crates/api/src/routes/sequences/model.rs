//! Request and response shapes of sequences and steps, and their validation.

use chrono::{DateTime, NaiveTime, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::warnings::TemplateWarning;
use crate::error::FieldError;
use crate::extract::Validate;
use crate::validation::Checks;

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
pub const MAX_STEPS: usize = 50;
pub const MAX_VARIANTS: usize = 10;
/// Most mailboxes in a sequence's rotation pool.
pub const MAX_MAILBOXES: usize = 100;
/// Longest wait before a step, in each unit (a year).
pub const MAX_WAIT_DAYS: i32 = 365;
pub const MAX_WAIT_HOURS: i32 = 24 * 365;
pub const MAX_WAIT_MINUTES: i32 = 60 * 24 * 365;
/// A variant's weight is 1 to this.
pub const MAX_VARIANT_WEIGHT: u32 = 1000;

/// The seed's body (`name`, `open_tracking_enabled`, `click_tracking_enabled`, `steps[]`)
/// plus the sending window, rotation pool and behaviour flags.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateSequence {
    pub name: String,
    /// Add an invisible 1x1 image (the open pixel) to the HTML part; opens are counted when
    /// it loads (default false). Its cost: on a short email the pixel alone makes
    /// SpamAssassin's `HTML_IMAGE_ONLY_*` rules fire (0.6 to 2.8 points, more the shorter the
    /// text), so enable it knowingly.
    #[serde(default)]
    pub open_tracking_enabled: bool,
    /// Route `http(s)` links through the tracker to count clicks (default false). A link
    /// whose visible text is a URL or a domain, and a bare URL, are left as they are unless
    /// `track_url_text_links` is set.
    #[serde(default)]
    pub click_tracking_enabled: bool,
    /// Track links whose visible text is a URL or a domain (a link reading `x.example` or
    /// `https://x.example`) and bare URLs too, when click tracking is on (default false: spam
    /// filters score a tracker URL behind a visible URL as a spoofed link).
    pub track_url_text_links: Option<bool>,
    #[serde(default)]
    pub steps: Vec<StepInput>,
    /// Stop a contact's sequence when they reply (default true).
    pub stop_on_reply: Option<bool>,
    /// Stop it on an automatic answer (out of office) too (default false: the sequence goes on).
    pub stop_on_auto_reply: Option<bool>,
    /// Add an unsubscribe link to bodies (default true; the List-Unsubscribe headers are always sent).
    pub unsubscribe_link: Option<bool>,
    /// Host of a custom tracking domain for this sequence's links.
    pub tracking_domain: Option<String>,
    pub sending_window: Option<SendingWindow>,
    /// The rotation pool: mailboxes of this workspace the first step may be sent from.
    #[serde(default)]
    pub mailbox_ids: Vec<Uuid>,
}

/// Changes to a sequence's settings; omitted fields keep their value. Steps are changed
/// through `/sequences/{id}/steps`.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSequence {
    pub name: Option<String>,
    /// Add an invisible 1x1 image (the open pixel) to the HTML part; opens are counted when
    /// it loads. Its cost: on a short email the pixel alone makes SpamAssassin's
    /// `HTML_IMAGE_ONLY_*` rules fire (0.6 to 2.8 points, more the shorter the text), so
    /// enable it knowingly.
    pub open_tracking_enabled: Option<bool>,
    /// Route `http(s)` links through the tracker to count clicks. A link whose visible text
    /// is a URL or a domain, and a bare URL, are left as they are unless
    /// `track_url_text_links` is set.
    pub click_tracking_enabled: Option<bool>,
    /// Track links whose visible text is a URL or a domain (a link reading `x.example` or
    /// `https://x.example`) and bare URLs too, when click tracking is on (false: spam
    /// filters score a tracker URL behind a visible URL as a spoofed link).
    pub track_url_text_links: Option<bool>,
    pub stop_on_reply: Option<bool>,
    pub stop_on_auto_reply: Option<bool>,
    pub unsubscribe_link: Option<bool>,
    /// Host of a custom tracking domain; an empty string removes it.
    pub tracking_domain: Option<String>,
    pub sending_window: Option<SendingWindow>,
    pub mailbox_ids: Option<Vec<Uuid>>,
}

/// When emails may go out, in the recipient's local time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SendingWindow {
    /// Days of the week: `mon` ... `sun` (default Monday to Friday).
    pub days: Option<Vec<String>>,
    /// Local start time, `HH:MM` (default 09:00).
    pub start_time: Option<String>,
    /// Local end time, `HH:MM`, after the start (default 17:00).
    pub end_time: Option<String>,
    /// IANA timezone of the window (default UTC).
    pub timezone: Option<String>,
    /// Use the contact's own timezone when it has one (default true).
    pub use_contact_timezone: Option<bool>,
    /// Send only on Monday to Friday whatever `days` says (default false).
    pub business_days_only: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    /// Ordering key: a non-negative integer, unique among the sequence's steps (0 allowed,
    /// gaps allowed), stored and returned as sent; the order of the keys is the order of the
    /// steps. Omitted: after every step that has one.
    pub step_order: Option<i32>,
    /// Subject template. May be empty for a step sent as a reply in the thread.
    #[serde(default)]
    pub subject: String,
    /// Body template (HTML or text).
    pub content: String,
    #[serde(default)]
    pub wait_days: i32,
    #[serde(default)]
    pub wait_hours: i32,
    #[serde(default)]
    pub wait_minutes: i32,
    /// Send as a reply in the thread of the earlier steps (default true after the first step).
    pub thread_with_previous: Option<bool>,
    /// A/B variants; when present, each email uses one, chosen by weight.
    #[serde(default)]
    pub variants: Vec<Variant>,
}

/// Changes to a step; omitted fields keep their value.
#[derive(Debug, Clone, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStep {
    /// New ordering key. A key that moves the step to another position is allowed only
    /// while no contact is enrolled (see the editing rules).
    pub step_order: Option<i32>,
    pub subject: Option<String>,
    pub content: Option<String>,
    pub wait_days: Option<i32>,
    pub wait_hours: Option<i32>,
    pub wait_minutes: Option<i32>,
    pub thread_with_previous: Option<bool>,
    pub variants: Option<Vec<Variant>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub subject: String,
    pub content: String,
    /// Relative weight, 1 to 1000.
    pub weight: u32,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Sequence {
    pub id: Uuid,
    pub name: String,
    /// draft, active, paused or archived.
    pub status: String,
    /// Add an invisible 1x1 image (the open pixel) to the HTML part; opens are counted when
    /// it loads. Its cost: on a short email the pixel alone makes SpamAssassin's
    /// `HTML_IMAGE_ONLY_*` rules fire (0.6 to 2.8 points, more the shorter the text), so
    /// enable it knowingly.
    pub open_tracking_enabled: bool,
    /// Route `http(s)` links through the tracker to count clicks. A link whose visible text
    /// is a URL or a domain, and a bare URL, are left as they are unless
    /// `track_url_text_links` is set.
    pub click_tracking_enabled: bool,
    /// Track links whose visible text is a URL or a domain (a link reading `x.example` or
    /// `https://x.example`) and bare URLs too, when click tracking is on (false: spam
    /// filters score a tracker URL behind a visible URL as a spoofed link).
    pub track_url_text_links: bool,
    pub stop_on_reply: bool,
    pub stop_on_auto_reply: bool,
    pub unsubscribe_link: bool,
    pub tracking_domain: Option<String>,
    pub sending_window: SendingWindowOut,
    pub mailbox_ids: Vec<Uuid>,
    pub steps: Vec<Step>,
    /// Variables of the steps' templates that no contact of the workspace can fill (see each
    /// step's `warnings`); empty when every variable is built in or some contact's attribute.
    pub warnings: Vec<TemplateWarning>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SendingWindowOut {
    pub days: Vec<String>,
    pub start_time: String,
    pub end_time: String,
    pub timezone: String,
    pub use_contact_timezone: bool,
    pub business_days_only: bool,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Step {
    pub id: Uuid,
    /// The ordering key, as sent.
    pub step_order: i32,
    pub subject: String,
    pub content: String,
    pub wait_days: i32,
    pub wait_hours: i32,
    pub wait_minutes: i32,
    pub thread_with_previous: bool,
    pub variants: Vec<Variant>,
    /// Variables of this step's templates without a fallback that are neither built in
    /// (`email`, `name`, `first_name`, `last_name`, `full_name`, `company`, `title`) nor an
    /// attribute of any contact in the workspace: an email to a contact without a value is
    /// not sent, and the enrollment pauses with the reason `missing_variable: <name>`.
    pub warnings: Vec<TemplateWarning>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SequencePage {
    pub data: Vec<Sequence>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListSequences {
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl Validate for CreateSequence {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        checks.name("name", &self.name);
        if let Some(domain) = &self.tracking_domain {
            check_tracking_domain(&mut checks, domain);
        }
        if let Some(window) = &self.sending_window {
            window.check(&mut checks, true);
        }
        checks.check(
            self.steps.len() <= MAX_STEPS,
            "steps",
            format!("at most {MAX_STEPS} steps"),
        );
        let keys = step_keys(&self.steps);
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].contains(key) {
                checks.fail(format!("steps[{i}].step_order"), "appears twice");
            }
        }
        let first = keys.iter().copied().min();
        for (i, step) in self.steps.iter().enumerate() {
            step.check(&mut checks, &format!("steps[{i}]"), Some(keys[i]) == first);
        }
        checks.check(
            self.mailbox_ids.len() <= MAX_MAILBOXES,
            "mailbox_ids",
            format!("at most {MAX_MAILBOXES} mailboxes"),
        );
        checks.finish()
    }
}

impl Validate for UpdateSequence {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(name) = &self.name {
            checks.name("name", name);
        }
        if let Some(domain) = self.tracking_domain.as_deref().filter(|d| !d.is_empty()) {
            check_tracking_domain(&mut checks, domain);
        }
        if let Some(window) = &self.sending_window {
            // A time given alone is compared with the stored other by the handler.
            window.check(&mut checks, false);
        }
        if let Some(ids) = &self.mailbox_ids {
            checks.check(
                ids.len() <= MAX_MAILBOXES,
                "mailbox_ids",
                format!("at most {MAX_MAILBOXES} mailboxes"),
            );
        }
        checks.finish()
    }
}

impl Validate for StepInput {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        // Whether it becomes the first step is only known against the sequence; the handler
        // checks the first-step rules again.
        self.check(&mut checks, "", false);
        checks.finish()
    }
}

impl Validate for UpdateStep {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(order) = self.step_order {
            check_step_order(&mut checks, "step_order", order);
        }
        if let Some(subject) = &self.subject {
            check_template(&mut checks, "subject", subject, true);
        }
        if let Some(content) = &self.content {
            check_template(&mut checks, "content", content, false);
        }
        check_waits(
            &mut checks,
            "",
            self.wait_days,
            self.wait_hours,
            self.wait_minutes,
        );
        if let Some(variants) = &self.variants {
            check_variants(&mut checks, "", variants);
        }
        checks.finish()
    }
}

impl StepInput {
    pub fn check(&self, checks: &mut Checks, prefix: &str, is_first: bool) {
        let field = |name: &str| join(prefix, name);
        if let Some(order) = self.step_order {
            check_step_order(checks, &field("step_order"), order);
        }
        check_template(checks, &field("subject"), &self.subject, true);
        check_template(checks, &field("content"), &self.content, false);
        check_waits(
            checks,
            prefix,
            Some(self.wait_days),
            Some(self.wait_hours),
            Some(self.wait_minutes),
        );
        check_variants(checks, prefix, &self.variants);
        if is_first {
            checks.check(
                !self.subject.trim().is_empty(),
                field("subject"),
                "the first step needs a subject",
            );
            checks.check(
                self.thread_with_previous != Some(true),
                field("thread_with_previous"),
                "the first step has no thread to reply in",
            );
        } else if self.subject.trim().is_empty() {
            checks.check(
                self.thread_with_previous != Some(false),
                field("subject"),
                "a step not sent in the thread needs a subject",
            );
        }
    }
}

impl SendingWindow {
    /// With `defaults`, a missing time is its default (creation); without, the times are
    /// compared only when both are given (an update, where the stored ones count).
    fn check(&self, checks: &mut Checks, defaults: bool) {
        if let Some(days) = &self.days {
            checks.check(
                !days.is_empty(),
                "sending_window.days",
                "needs at least one day",
            );
            for (i, day) in days.iter().enumerate() {
                checks.check(
                    DAY_NAMES.contains(&day.to_ascii_lowercase().as_str()),
                    format!("sending_window.days[{i}]"),
                    "must be one of mon, tue, wed, thu, fri, sat, sun",
                );
            }
        }
        let start = self.start_time.as_deref().map(parse_time);
        let end = self.end_time.as_deref().map(parse_time);
        if let Some(None) = start {
            checks.fail("sending_window.start_time", "must be a time as HH:MM");
        }
        if let Some(None) = end {
            checks.fail("sending_window.end_time", "must be a time as HH:MM");
        }
        if let Some(timezone) = &self.timezone {
            checks.timezone("sending_window.timezone", timezone);
        }
        let (start, end) = match (start.flatten(), end.flatten()) {
            (Some(start), Some(end)) => (start, end),
            (start, end) if defaults => (
                start.unwrap_or(default_start()),
                end.unwrap_or(default_end()),
            ),
            _ => return,
        };
        checks.check(
            start < end,
            "sending_window.end_time",
            "must be after start_time",
        );
    }

    /// ISO weekday numbers (1 = Monday).
    pub fn day_numbers(&self) -> Option<Vec<i16>> {
        self.days.as_ref().map(|days| {
            let mut numbers: Vec<i16> = days
                .iter()
                .filter_map(|d| DAY_NAMES.iter().position(|n| *n == d.to_ascii_lowercase()))
                .map(|i| i as i16 + 1)
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers
        })
    }
}

/// The ordering key of each step of a new sequence: its own, or for those without one, one
/// after the largest given (from 1 when none is), in the order they are listed.
pub fn step_keys(steps: &[StepInput]) -> Vec<i32> {
    let mut next = steps
        .iter()
        .filter_map(|s| s.step_order)
        .max()
        .map_or(1, |max| max.saturating_add(1));
    steps
        .iter()
        .map(|step| {
            step.step_order.unwrap_or_else(|| {
                let key = next;
                next = next.saturating_add(1);
                key
            })
        })
        .collect()
}

/// The position (from 1) each key takes: its rank among the keys.
pub fn positions(keys: &[i32]) -> Vec<i32> {
    keys.iter()
        .map(|key| 1 + keys.iter().filter(|other| *other < key).count() as i32)
        .collect()
}

/// The smallest `step_order` key.
pub const MIN_STEP_ORDER: i32 = 0;
/// The largest `step_order` key a client may give: far enough below `i32::MAX` that the
/// steps given without one always have room after it.
pub const MAX_STEP_ORDER: i32 = 1_000_000_000;

fn check_step_order(checks: &mut Checks, field: &str, order: i32) {
    checks.check(
        (MIN_STEP_ORDER..=MAX_STEP_ORDER).contains(&order),
        field,
        format!("must be between {MIN_STEP_ORDER} and {MAX_STEP_ORDER}"),
    );
}

/// `HH:MM` (or `H:M`); chrono would also skip whitespace before each number.
pub fn parse_time(value: &str) -> Option<NaiveTime> {
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    NaiveTime::parse_from_str(value, "%H:%M").ok()
}

pub fn default_start() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
}

pub fn default_end() -> NaiveTime {
    NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default()
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_tracking_domain(checks: &mut Checks, domain: &str) {
    let ok = !domain.is_empty()
        && domain.len() <= crate::validation::MAX_HOST_LEN
        && domain.contains('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    checks.check(
        ok,
        "tracking_domain",
        "must be a host name such as track.example.com",
    );
}

fn check_template(checks: &mut Checks, field: &str, source: &str, single_line: bool) {
    if single_line && source.chars().any(char::is_control) {
        checks.fail(field, "must be one line without control characters");
    }
    if let Err(error) = domain::templates::validate(source) {
        checks.fail(field, error.to_string());
    }
}

fn check_waits(
    checks: &mut Checks,
    prefix: &str,
    days: Option<i32>,
    hours: Option<i32>,
    minutes: Option<i32>,
) {
    for (name, value, max) in [
        ("wait_days", days, MAX_WAIT_DAYS),
        ("wait_hours", hours, MAX_WAIT_HOURS),
        ("wait_minutes", minutes, MAX_WAIT_MINUTES),
    ] {
        if let Some(value) = value {
            checks.check(
                (0..=max).contains(&value),
                join(prefix, name),
                format!("must be between 0 and {max}"),
            );
        }
    }
}

fn check_variants(checks: &mut Checks, prefix: &str, variants: &[Variant]) {
    checks.check(
        variants.len() <= MAX_VARIANTS,
        join(prefix, "variants"),
        format!("at most {MAX_VARIANTS} variants"),
    );
    for (i, variant) in variants.iter().enumerate() {
        let at = join(prefix, &format!("variants[{i}]"));
        check_template(checks, &format!("{at}.subject"), &variant.subject, true);
        check_template(checks, &format!("{at}.content"), &variant.content, false);
        checks.check(
            (1..=MAX_VARIANT_WEIGHT).contains(&variant.weight),
            format!("{at}.weight"),
            format!("must be between 1 and {MAX_VARIANT_WEIGHT}"),
        );
    }
}
