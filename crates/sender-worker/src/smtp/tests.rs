use std::time::Duration;

use domain::mail::{Login, Security, Server};
use secrecy::SecretString;
use uuid::Uuid;

use super::outcome::{Cause, Failure};
use super::*;

fn login() -> Login {
    Login {
        method: domain::mail::LoginMethod::Password,
        username: "me@example.com".into(),
        password: SecretString::from("hunter2-secret".to_owned()),
    }
}

fn reply(stage: Stage, code: u16, text: &str) -> SendOutcome {
    Failure::new(
        stage,
        Cause::Reply {
            code,
            text: text.into(),
        },
    )
    .into_outcome(None)
}

#[test]
fn replies_are_classified_by_their_first_digit() {
    assert_eq!(
        reply(Stage::RcptTo, 451, "4.7.1 try later"),
        SendOutcome::Transient {
            stage: Stage::RcptTo,
            code: Some(451),
            reply: "451 4.7.1 try later".into()
        }
    );
    assert_eq!(
        reply(Stage::AfterData, 554, "5.7.1 spam"),
        SendOutcome::Permanent {
            stage: Stage::AfterData,
            code: Some(554),
            reply: "554 5.7.1 spam".into()
        }
    );
}

#[test]
fn no_reply_is_retryable_before_the_message_and_unknown_after() {
    for stage in [
        Stage::Connect,
        Stage::Tls,
        Stage::Auth,
        Stage::MailFrom,
        Stage::RcptTo,
        Stage::Data,
    ] {
        let outcome =
            Failure::new(stage, Cause::TimedOut(Duration::from_millis(5))).into_outcome(None);
        assert!(
            matches!(outcome, SendOutcome::Transient { stage: s, code: None, .. } if s == stage),
            "{outcome:?}"
        );
        let outcome = Failure::new(stage, Cause::Broken("reset".into())).into_outcome(None);
        assert_eq!(outcome.kind(), "transient", "{outcome:?}");
    }
    let outcome = Failure::new(Stage::AfterData, Cause::TimedOut(Duration::from_millis(5)))
        .into_outcome(None);
    assert!(
        matches!(outcome, SendOutcome::Unknown { .. }),
        "{outcome:?}"
    );
    let outcome = Failure::new(Stage::AfterData, Cause::Broken("reset".into())).into_outcome(None);
    assert!(
        matches!(outcome, SendOutcome::Unknown { .. }),
        "{outcome:?}"
    );
}

#[test]
fn client_refusals_are_permanent_without_a_code() {
    let outcome = Failure::new(Stage::Tls, Cause::Refused("no STARTTLS".into())).into_outcome(None);
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            stage: Stage::Tls,
            code: None,
            reply: "no STARTTLS".into()
        }
    );
}

#[test]
fn replies_never_carry_the_password_and_are_bounded() {
    let login = login();
    let text = format!("5.7.8 bad credentials hunter2-secret {}", "x".repeat(1000));
    let outcome =
        Failure::new(Stage::Auth, Cause::Reply { code: 535, text }).into_outcome(Some(&login));
    let SendOutcome::Permanent { reply, .. } = outcome else {
        panic!("expected permanent, got {outcome:?}");
    };
    assert!(!reply.contains("hunter2"), "{reply}");
    assert!(reply.chars().count() <= 401, "{}", reply.len());
}

#[test]
fn stale_connections_are_recognised_only_at_mail_from_without_a_reply() {
    assert!(Failure::new(Stage::MailFrom, Cause::Broken("eof".into())).looks_stale());
    assert!(
        Failure::new(
            Stage::MailFrom,
            Cause::Reply {
                code: 421,
                text: "timeout".into()
            }
        )
        .looks_stale()
    );
    assert!(!Failure::new(Stage::MailFrom, Cause::TimedOut(Duration::from_secs(1))).looks_stale());
    assert!(!Failure::new(Stage::RcptTo, Cause::Broken("eof".into())).looks_stale());
    assert!(
        !Failure::new(
            Stage::MailFrom,
            Cause::Reply {
                code: 550,
                text: "no".into()
            }
        )
        .looks_stale()
    );
}

#[test]
fn stages_are_ordered_as_the_session_goes() {
    assert!(Stage::Connect < Stage::Tls && Stage::Tls < Stage::Auth);
    assert!(Stage::Auth < Stage::MailFrom && Stage::MailFrom < Stage::RcptTo);
    assert!(Stage::RcptTo < Stage::Data && Stage::Data < Stage::AfterData);
}

fn settings() -> SmtpSettings {
    SmtpSettings {
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        data_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        connections_per_mailbox: 0,
        messages_per_connection: 0,
        hello_name: Some("worker.test".into()),
        outbound: domain::testing::test_outbound_guard(),
    }
}

#[test]
fn fingerprints_follow_the_server_and_login_and_print_nothing() {
    let pools = Pools::new(settings());
    let mut mailbox = MailboxServer {
        mailbox_id: Uuid::new_v4(),
        server: Server {
            host: "smtp.example.com".into(),
            port: 587,
            security: Security::Starttls,
        },
        login: Some(login()),
    };
    let first = pools.fingerprint(&mailbox);
    assert_eq!(first, pools.fingerprint(&mailbox.clone()));
    assert_eq!(format!("{first:?}"), "Fingerprint(..)");
    if let Some(login) = mailbox.login.as_mut() {
        login.password = SecretString::from("changed".to_owned());
    }
    assert_ne!(first, pools.fingerprint(&mailbox));
    mailbox.login = None;
    assert_ne!(first, pools.fingerprint(&mailbox));
    let debug = format!("{pools:?} {mailbox:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn limits_are_at_least_one() {
    let pools = Pools::new(settings());
    assert_eq!(pools.settings().connections_per_mailbox, 1);
    assert_eq!(pools.settings().messages_per_connection, 1);
}

#[test]
fn pools_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Pools>();
}

#[test]
fn settings_come_from_the_worker_configuration() -> anyhow::Result<()> {
    let mut config = domain::testing::test_config_with_url("postgres://localhost/none")?;
    config.sender_worker.hello_name = " mail.acme.test ".to_owned();
    let worker = &config.sender_worker;
    let settings = SmtpSettings::from_config(worker, config.security.outbound_guard());
    assert_eq!(settings.hello_name.as_deref(), Some("mail.acme.test"));
    assert_eq!(
        settings.connect_timeout,
        Duration::from_millis(worker.connect_timeout_ms)
    );
    assert_eq!(
        settings.command_timeout,
        Duration::from_millis(worker.command_timeout_ms)
    );
    assert_eq!(
        settings.data_timeout,
        Duration::from_millis(worker.data_timeout_ms)
    );
    assert_eq!(
        settings.idle_timeout,
        Duration::from_millis(worker.idle_timeout_ms)
    );
    assert_eq!(
        settings.connections_per_mailbox,
        worker.connections_per_mailbox as usize
    );
    assert_eq!(
        settings.messages_per_connection,
        worker.messages_per_connection
    );
    Ok(())
}

/// lettre's `ClientCodec` (private) as it encodes a whole message: a dot is doubled when it
/// starts a line, a line starting after CR LF; then lettre's `message()` adds CRLF.CRLF.
fn stuffed_as_lettre_does(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    let mut after_cr = false;
    for &b in message {
        out.push(b);
        if b == b'.' && line_start {
            out.push(b'.');
        }
        line_start = after_cr && b == b'\n';
        after_cr = b == b'\r';
    }
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

#[test]
fn dot_stuffing_matches_lettre_byte_for_byte() {
    let cases = [
        "",
        ".",
        "..",
        ".\r\n",
        "\r\n.",
        "\r\n.\r\n",
        "a\r\n.b\r\n..c\r\n.\r\n",
        "no final line break",
        "ends with a line break\r\n",
        "bare\n.lf and bare\r.cr are no line starts\r\r\n.but this is\n\r\n.",
        "é\r\n.ü\r\n.\r\n€.",
        // lettre's own codec test, as one message.
        ".\r\ntest\r\ntest\r\n\r\n.\r\n\r\ntestte\r\n.\r\nsttesttest.test\n.test\ntesttesttest\r\n.test\r\ntest.\r\n",
    ];
    for case in cases {
        assert_eq!(
            session::dot_stuffed(case).as_bytes(),
            stuffed_as_lettre_does(case.as_bytes()),
            "{case:?}"
        );
    }
    assert_eq!(
        session::dot_stuffed(
            ".\r\ntest\r\ntest\r\n\r\n.\r\n\r\ntestte\r\n.\r\nsttesttest.test\n.test\ntesttesttest\r\n.test\r\ntest.\r\n"
        ),
        "..\r\ntest\r\ntest\r\n\r\n..\r\n\r\ntestte\r\n..\r\nsttesttest.test\n.test\ntesttesttest\r\n..test\r\ntest.\r\n\r\n.\r\n",
        "lettre's expected output"
    );
}

#[test]
fn dot_stuffing_matches_lettre_on_every_short_message_of_dots_and_line_breaks() {
    // All strings of up to 7 of these characters: every way line breaks and dots can meet.
    let alphabet = ['.', '\r', '\n', 'x'];
    let mut messages = vec![String::new()];
    let mut start = 0;
    for _ in 0..7 {
        let end = messages.len();
        for i in start..end {
            for c in alphabet {
                let mut longer = messages[i].clone();
                longer.push(c);
                messages.push(longer);
            }
        }
        start = end;
    }
    for message in &messages {
        assert_eq!(
            session::dot_stuffed(message).as_bytes(),
            stuffed_as_lettre_does(message.as_bytes()),
            "{message:?}"
        );
    }
}

#[test]
fn pipelining_is_read_from_the_ehlo_keywords() -> anyhow::Result<()> {
    let announces = |reply: &str| -> anyhow::Result<bool> {
        Ok(session::announces_pipelining(&reply.parse()?))
    };
    assert!(announces(
        "250-smtp.example.com hello\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    )?);
    assert!(announces("250-example\r\n250 pipelining\r\n")?);
    assert!(!announces(
        "250-example\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n"
    )?);
    assert!(
        !announces("250 PIPELINING greets you\r\n")?,
        "the server's name"
    );
    assert!(!announces("250-example\r\n250 XPIPELINING\r\n")?);
    Ok(())
}
