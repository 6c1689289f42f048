use chrono::{DateTime, Utc};
use domain::crypto::SecretCipher;
use domain::db::sending::{ClaimedMessage, ThreadEmail};
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

fn message() -> ClaimedMessage {
    ClaimedMessage {
        id: Uuid::now_v7(),
        workspace_id: Uuid::now_v7(),
        enrollment_id: Uuid::now_v7(),
        step_order: 2,
        attempts: 1,
        message_id_header: Some("<m2@example.com>".to_owned()),
        subject_source: "Follow-up".to_owned(),
        content_source: "Hi {{first_name|there}}".to_owned(),
        thread_with_previous: true,
        enrollment_status: "active".to_owned(),
        contact_email: "jane@example.org".to_owned(),
        first_name: Some("Jane".to_owned()),
        last_name: Some(" Doe ".to_owned()),
        company: None,
        title: None,
        attributes: serde_json::json!({}),
        contact_status: "active".to_owned(),
        suppressed: false,
        mailbox_id: Uuid::now_v7(),
        mailbox_email: "sales@example.com".to_owned(),
        mailbox_name: Some("Sales".to_owned()),
        mailbox_status: "active".to_owned(),
        smtp_host: "smtp.example.com".to_owned(),
        smtp_port: 587,
        smtp_security: "starttls".to_owned(),
        smtp_username: None,
        smtp_password_encrypted: None,
        oauth: false,
        sequence_status: "active".to_owned(),
        open_tracking: true,
        click_tracking: true,
        track_url_text_links: false,
        unsubscribe_link: true,
        tracking_domain: None,
        workspace_tracking_base_url: None,
        unsubscribe_mailto: None,
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

fn prepared(message: &ClaimedMessage, thread: &[ThreadEmail]) -> Prepared {
    let cipher = cipher();
    let context = Context {
        cipher: &cipher,
        tracker_url: "http://tracker.local",
        now: now(),
    };
    match prepare(message, thread, &context) {
        Verdict::Send(prepared) => *prepared,
        Verdict::Skip(outcome) => panic!("expected a send, got {outcome:?}"),
    }
}

fn skipped(message: &ClaimedMessage) -> Outcome {
    let cipher = cipher();
    let context = Context {
        cipher: &cipher,
        tracker_url: "http://tracker.local",
        now: now(),
    };
    match prepare(message, &[], &context) {
        Verdict::Skip(outcome) => outcome,
        Verdict::Send(_) => panic!("expected a skip"),
    }
}

#[test]
fn a_follow_up_threads_under_the_first_email_with_every_earlier_id_in_order() {
    let message = message();
    let other_enrollment = ThreadEmail {
        enrollment_id: Uuid::now_v7(),
        ..earlier(&message, 1, "<other@example.com>")
    };
    let thread = [
        earlier(&message, 1, "<m1@example.com>"),
        earlier(&message, 0, "<m0@example.com>"),
        earlier(&message, 3, "<later@example.com>"),
        other_enrollment,
    ];
    let email = prepared(&message, &thread).email;
    let thread = email.thread.unwrap_or_else(|| panic!("no thread"));
    assert_eq!(thread.first_subject, "Subject of step 0");
    assert_eq!(thread.references, ["<m0@example.com>", "<m1@example.com>"]);
}

#[test]
fn a_step_that_does_not_thread_or_has_nothing_before_it_starts_a_new_thread() {
    let mut message = message();
    assert!(prepared(&message, &[]).email.thread.is_none());
    message.thread_with_previous = false;
    let thread = [earlier(&message, 1, "<m1@example.com>")];
    assert!(prepared(&message, &thread).email.thread.is_none());
}

#[test]
fn envelope_names_and_server_come_from_the_mailbox_and_contact() {
    let message = message();
    let prepared = prepared(&message, &[]);
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
    let mut message = message();
    assert_eq!(
        prepared(&message, &[]).email.tracking.base_url,
        "http://tracker.local"
    );
    message.workspace_tracking_base_url = Some("https://t.workspace.example".to_owned());
    assert_eq!(
        prepared(&message, &[]).email.tracking.base_url,
        "https://t.workspace.example"
    );
    message.tracking_domain = Some("links.sequence.example".to_owned());
    assert_eq!(
        prepared(&message, &[]).email.tracking.base_url,
        "https://links.sequence.example"
    );
}

#[test]
fn a_stopped_enrollment_cancels_and_an_unreachable_contact_fails() {
    let mut message = message();
    message.enrollment_status = "stopped".to_owned();
    assert!(matches!(skipped(&message), Outcome::Cancelled { .. }));

    let mut message = self::message();
    message.contact_status = "unsubscribed".to_owned();
    assert!(matches!(skipped(&message), Outcome::Failed { .. }));

    let mut message = self::message();
    message.suppressed = true;
    assert!(matches!(skipped(&message), Outcome::Failed { .. }));

    let mut message = self::message();
    message.contact_email = "not an address".to_owned();
    assert!(matches!(skipped(&message), Outcome::Failed { .. }));
}

#[test]
fn a_paused_mailbox_or_sequence_asks_for_a_retry() {
    let mut message = message();
    message.mailbox_status = "paused".to_owned();
    assert!(matches!(skipped(&message), Outcome::Retry { .. }));
    let mut message = self::message();
    message.sequence_status = "paused".to_owned();
    assert!(matches!(skipped(&message), Outcome::Retry { .. }));
}

#[test]
fn the_password_is_decrypted_for_the_mailbox_it_was_stored_for() -> anyhow::Result<()> {
    let cipher = cipher();
    let mut message = message();
    message.smtp_username = Some("sales".to_owned());
    message.smtp_password_encrypted = Some(cipher.encrypt(
        &SecretString::from("s3cret".to_owned()),
        &smtp_password_context(message.mailbox_id),
    )?);
    let login = prepared(&message, &[])
        .server
        .login
        .unwrap_or_else(|| panic!("no login"));
    assert_eq!(login.username, "sales");

    // Stored for another mailbox: refused, and the worker retries rather than send.
    message.mailbox_id = Uuid::now_v7();
    assert!(matches!(skipped(&message), Outcome::Retry { .. }));
    Ok(())
}
