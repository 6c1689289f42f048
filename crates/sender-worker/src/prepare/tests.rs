use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::crypto::SecretCipher;
use domain::db::sending::{ClaimMailbox, ClaimSequence, ClaimedMessage, ThreadEmail};
use secrecy::SecretString;
use uuid::Uuid;

use super::*;

fn cipher() -> SecretCipher {
    SecretCipher::from_spec(&SecretString::from(
        "1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
    ))
    .unwrap_or_else(|e| panic!("test key: {e}"))
}

fn now() -> DateTime<Utc> {
    "2026-03-02T10:00:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A claimed message with what it shares with its batch.
struct Fixture {
    message: ClaimedMessage,
    step: Step,
    mailbox: ClaimMailbox,
    sequence: ClaimSequence,
    subjects: HashMap<String, Source>,
}

impl Fixture {
    fn shared(&self) -> Shared<'_> {
        Shared {
            step: &self.step,
            mailbox: &self.mailbox,
            sequence: &self.sequence,
            thread_subjects: &self.subjects,
        }
    }
}

fn fixture() -> Fixture {
    let workspace_id = Uuid::now_v7();
    let sequence_id = Uuid::now_v7();
    let mailbox_id = Uuid::now_v7();
    Fixture {
        message: ClaimedMessage {
            id: Uuid::now_v7(),
            workspace_id,
            enrollment_id: Uuid::now_v7(),
            sequence_id,
            step_id: Uuid::now_v7(),
            variant_index: None,
            step_order: 2,
            attempts: 1,
            message_id_header: Some("<m2@example.com>".to_owned()),
            enrollment_status: "active".to_owned(),
            mailbox_id,
            contact_email: "jane@example.org".to_owned(),
            first_name: Some("Jane".to_owned()),
            last_name: Some(" Doe ".to_owned()),
            company: None,
            title: None,
            attributes: serde_json::json!({}),
            contact_status: "active".to_owned(),
            suppressed: false,
        },
        step: Step {
            subject: "Follow-up".into(),
            content: "Hi {{first_name|there}}".into(),
            thread_with_previous: true,
        },
        mailbox: ClaimMailbox {
            id: mailbox_id,
            email: "sales@example.com".to_owned(),
            name: Some("Sales".to_owned()),
            status: "active".to_owned(),
            smtp_host: "smtp.example.com".to_owned(),
            smtp_port: 587,
            smtp_security: "starttls".to_owned(),
            smtp_username: None,
            smtp_password_encrypted: None,
            oauth: false,
        },
        sequence: ClaimSequence {
            sequence_id,
            workspace_id,
            status: "active".to_owned(),
            open_tracking: true,
            click_tracking: true,
            track_url_text_links: false,
            unsubscribe_link: true,
            tracking_domain: None,
            workspace_tracking_base_url: None,
            unsubscribe_mailto: None,
        },
        subjects: HashMap::new(),
    }
}

fn earlier(message: &ClaimedMessage, step_order: i32, header: &str) -> ThreadEmail {
    ThreadEmail {
        enrollment_id: message.enrollment_id,
        message_id: Uuid::now_v7(),
        step_order,
        message_id_header: header.to_owned(),
        subject_source: format!("Subject of step {step_order}"),
    }
}

fn prepared(fixture: &Fixture, thread: &[ThreadEmail]) -> Prepared {
    let cipher = cipher();
    let context = Context {
        cipher: &cipher,
        tracker_url: "http://tracker.local",
        now: now(),
    };
    match prepare(&fixture.message, fixture.shared(), thread, &context) {
        Verdict::Send(prepared) => *prepared,
        Verdict::Skip(outcome) => panic!("expected a send, got {outcome:?}"),
    }
}

fn skipped(fixture: &Fixture) -> Outcome {
    let cipher = cipher();
    let context = Context {
        cipher: &cipher,
        tracker_url: "http://tracker.local",
        now: now(),
    };
    match prepare(&fixture.message, fixture.shared(), &[], &context) {
        Verdict::Skip(outcome) => outcome,
        Verdict::Send(_) => panic!("expected a skip"),
    }
}

#[test]
fn a_follow_up_threads_under_the_first_email_with_every_earlier_id_in_order() {
    let f = fixture();
    let other_enrollment = ThreadEmail {
        enrollment_id: Uuid::now_v7(),
        ..earlier(&f.message, 1, "<other@example.com>")
    };
    let thread = [
        earlier(&f.message, 1, "<m1@example.com>"),
        earlier(&f.message, 0, "<m0@example.com>"),
        earlier(&f.message, 3, "<later@example.com>"),
        other_enrollment,
    ];
    let email = prepared(&f, &thread).email;
    let thread = email.thread.unwrap_or_else(|| panic!("no thread"));
    assert_eq!(thread.first_subject.text(), "Subject of step 0");
    assert_eq!(thread.references, ["<m0@example.com>", "<m1@example.com>"]);
}

#[test]
fn a_step_that_does_not_thread_or_has_nothing_before_it_starts_a_new_thread() {
    let mut f = fixture();
    assert!(prepared(&f, &[]).email.thread.is_none());
    f.step.thread_with_previous = false;
    let thread = [earlier(&f.message, 1, "<m1@example.com>")];
    assert!(prepared(&f, &thread).email.thread.is_none());
}

#[test]
fn envelope_names_and_server_come_from_the_mailbox_and_contact() {
    let f = fixture();
    let prepared = prepared(&f, &[]);
    assert_eq!(prepared.email.to.name.as_deref(), Some("Jane Doe"));
    assert_eq!(prepared.email.from.name.as_deref(), Some("Sales"));
    assert_eq!(
        prepared.envelope.from().map(ToString::to_string).as_deref(),
        Some("sales@example.com")
    );
    assert_eq!(prepared.server.server.port, 587);
    assert_eq!(prepared.server.server.security, Security::Starttls);
    assert!(prepared.server.login.is_none());
    assert_eq!(prepared.email.message_id_header, "<m2@example.com>");
}

#[test]
fn the_tracking_base_is_the_sequence_domain_then_the_workspace_then_the_tracker() {
    let mut f = fixture();
    assert_eq!(
        prepared(&f, &[]).email.tracking.base_url,
        "http://tracker.local"
    );
    f.sequence.workspace_tracking_base_url = Some("https://t.workspace.example".to_owned());
    assert_eq!(
        prepared(&f, &[]).email.tracking.base_url,
        "https://t.workspace.example"
    );
    f.sequence.tracking_domain = Some("links.sequence.example".to_owned());
    assert_eq!(
        prepared(&f, &[]).email.tracking.base_url,
        "https://links.sequence.example"
    );
}

#[test]
fn a_stopped_enrollment_cancels_and_an_unreachable_contact_fails() {
    let mut f = fixture();
    f.message.enrollment_status = "stopped".to_owned();
    assert!(matches!(skipped(&f), Outcome::Cancelled { .. }));

    let mut f = fixture();
    f.message.contact_status = "unsubscribed".to_owned();
    assert!(matches!(skipped(&f), Outcome::Failed { .. }));

    let mut f = fixture();
    f.message.suppressed = true;
    assert!(matches!(skipped(&f), Outcome::Failed { .. }));

    let mut f = fixture();
    f.message.contact_email = "not an address".to_owned();
    assert!(matches!(skipped(&f), Outcome::Failed { .. }));
}

#[test]
fn a_paused_mailbox_or_sequence_asks_for_a_retry() {
    let mut f = fixture();
    f.mailbox.status = "paused".to_owned();
    assert!(matches!(skipped(&f), Outcome::Retry { .. }));
    let mut f = fixture();
    f.sequence.status = "paused".to_owned();
    assert!(matches!(skipped(&f), Outcome::Retry { .. }));
}

#[test]
fn the_password_is_decrypted_for_the_mailbox_it_was_stored_for() -> anyhow::Result<()> {
    let cipher = cipher();
    let mut f = fixture();
    f.mailbox.smtp_username = Some("sales".to_owned());
    f.mailbox.smtp_password_encrypted = Some(cipher.encrypt(
        &SecretString::from("s3cret".to_owned()),
        &smtp_password_context(f.mailbox.id),
    )?);
    let login = prepared(&f, &[])
        .server
        .login
        .unwrap_or_else(|| panic!("no login"));
    assert_eq!(login.username, "sales");

    // Stored for another mailbox: refused, and the worker retries rather than send.
    f.mailbox.id = Uuid::now_v7();
    assert!(matches!(skipped(&f), Outcome::Retry { .. }));
    Ok(())
}
