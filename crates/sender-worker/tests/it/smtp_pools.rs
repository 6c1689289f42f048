//! The SMTP pools against a scripted fake server: each failure stage and reply class, reuse
//! and renewal of connections, the per-mailbox connection limit.

use std::time::Duration;

use domain::mail::{Login, Security};
use domain::outbound::{OutboundGuard, REFUSED};
use domain::testing::poll_until;
use lettre::address::Envelope;
use secrecy::SecretString;
use sender_worker::smtp::{Pools, SendOutcome, SmtpSettings, Stage};

use crate::fake_smtp::{Act, FakeSmtp};

const MESSAGE: &str = "From: sender@acme.test\r\nTo: rcpt@dest.test\r\nSubject: hi\r\n\r\n\
Hello.\r\n.A line starting with a dot\r\n.\r\nBye.\r\n";

pub fn settings() -> SmtpSettings {
    SmtpSettings {
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        connections_per_mailbox: 2,
        messages_per_connection: 100,
        hello_name: Some("worker.test".into()),
        outbound: domain::testing::test_outbound_guard(),
    }
}

fn envelope() -> anyhow::Result<Envelope> {
    Ok(Envelope::new(
        Some("sender@acme.test".parse()?),
        vec!["rcpt@dest.test".parse()?],
    )?)
}

/// Sends one email to a server following `script` (fresh pools), returning the outcome.
async fn outcome_with(
    script: impl Fn(usize, &str, &str) -> Option<Act> + Send + Sync + 'static,
) -> anyhow::Result<(SendOutcome, FakeSmtp)> {
    let server = FakeSmtp::start(script).await?;
    let pools = Pools::new(settings());
    let outcome = pools
        .send(&server.mailbox(), &envelope()?, MESSAGE.as_bytes())
        .await;
    Ok((outcome, server))
}

fn at(event: &'static str, act: Act) -> impl Fn(usize, &str, &str) -> Option<Act> {
    move |_, e, _| (e == event).then(|| act.clone())
}

#[tokio::test]
async fn an_accepted_email_arrives_dot_stuffing_undone() -> anyhow::Result<()> {
    let (outcome, server) =
        outcome_with(at("DOT", Act::reply("250 2.0.0 Ok: queued as ABC"))).await?;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            reply: "250 2.0.0 Ok: queued as ABC".into()
        }
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].trim_end_matches("\r\n"),
        MESSAGE.trim_end_matches("\r\n")
    );
    let commands: Vec<String> = server.commands().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        commands,
        [
            "EHLO worker.test",
            // Again, for the keywords lettre does not keep (PIPELINING).
            "EHLO worker.test",
            "MAIL FROM:<sender@acme.test>",
            "RCPT TO:<rcpt@dest.test>",
            "DATA"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_4xx_at_rcpt_is_transient_and_the_connection_is_not_reused() -> anyhow::Result<()> {
    for reply in ["451 4.7.1 greylisted, try later", "421 4.3.2 shutting down"] {
        let server =
            FakeSmtp::start(move |n, e, _| (n == 0 && e == "RCPT").then_some(Act::reply(reply)))
                .await?;
        let pools = Pools::new(settings());
        let mailbox = server.mailbox();
        let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
        let code = reply[..3].parse::<u16>()?;
        assert_eq!(
            outcome,
            SendOutcome::Transient {
                stage: Stage::RcptTo,
                code: Some(code),
                reply: reply.into()
            }
        );
        assert!(server.messages().is_empty());
        let again = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
        assert_eq!(again.kind(), "accepted", "{again:?}");
        assert_eq!(
            server.accepted(),
            2,
            "a failed connection must not be reused"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_550_at_rcpt_is_permanent() -> anyhow::Result<()> {
    let (outcome, server) = outcome_with(at("RCPT", Act::reply("550 5.1.1 no such user"))).await?;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            stage: Stage::RcptTo,
            code: Some(550),
            reply: "550 5.1.1 no such user".into()
        }
    );
    assert!(server.messages().is_empty());
    Ok(())
}

#[tokio::test]
async fn replies_after_the_dot_are_classified_at_after_data() -> anyhow::Result<()> {
    let (outcome, _server) = outcome_with(at("DOT", Act::reply("451 4.3.0 try again"))).await?;
    assert_eq!(
        outcome,
        SendOutcome::Transient {
            stage: Stage::AfterData,
            code: Some(451),
            reply: "451 4.3.0 try again".into()
        }
    );
    let (outcome, _server) =
        outcome_with(at("DOT", Act::reply("554 5.7.1 rejected as spam"))).await?;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            stage: Stage::AfterData,
            code: Some(554),
            reply: "554 5.7.1 rejected as spam".into()
        }
    );
    Ok(())
}

#[tokio::test]
async fn no_reply_after_the_dot_is_unknown() -> anyhow::Result<()> {
    let server = FakeSmtp::start(at("DOT", Act::Stall)).await?;
    let pools = Pools::new(SmtpSettings {
        data_timeout: Duration::from_millis(300),
        ..settings()
    });
    let mailbox = server.mailbox();
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert!(
        matches!(outcome, SendOutcome::Unknown { .. }),
        "{outcome:?}"
    );
    assert_eq!(server.messages().len(), 1, "the server did get the message");
    assert_eq!(pools.idle_connections(), 0);
    Ok(())
}

#[tokio::test]
async fn a_dropped_connection_before_the_message_is_transient_and_not_retried() -> anyhow::Result<()>
{
    let (outcome, server) = outcome_with(at("RCPT", Act::Close)).await?;
    assert!(
        matches!(
            outcome,
            SendOutcome::Transient {
                stage: Stage::RcptTo,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(server.accepted(), 1);

    // On a fresh connection even a failure at MAIL FROM is reported, not retried.
    let (outcome, server) = outcome_with(at("MAIL", Act::Close)).await?;
    assert!(
        matches!(
            outcome,
            SendOutcome::Transient {
                stage: Stage::MailFrom,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(server.accepted(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rejected_login_is_permanent_at_auth_without_the_password() -> anyhow::Result<()> {
    // The server echoes the client's AUTH line, credentials included.
    let server = FakeSmtp::start(|_, event, line| {
        (event == "AUTH").then(|| Act::Reply(format!("535 5.7.8 bad credentials: {line}")))
    })
    .await?;
    let pools = Pools::new(settings());
    let mut mailbox = server.mailbox();
    mailbox.login = Some(Login {
        method: domain::mail::LoginMethod::Password,
        username: "ana@acme.test".into(),
        password: SecretString::from("correct horse battery".to_owned()),
    });
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    let SendOutcome::Permanent {
        stage: Stage::Auth,
        code: Some(535),
        reply,
    } = &outcome
    else {
        anyhow::bail!("expected a permanent failure at AUTH, got {outcome:?}");
    };
    assert!(reply.contains("[redacted]"), "{reply}");
    assert!(!reply.contains("Y29ycmVjdCBob3JzZSBiYXR0ZXJ5"), "{reply}");
    let commands = server.commands();
    assert!(
        commands.iter().any(|(_, c)| c.starts_with("AUTH PLAIN")),
        "{commands:?}"
    );
    assert!(!commands.iter().any(|(_, c)| c.starts_with("MAIL")));
    Ok(())
}

#[tokio::test]
async fn starttls_is_required_when_configured() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(settings());
    let mut mailbox = server.mailbox();
    mailbox.server.security = Security::Starttls;
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Permanent {
                stage: Stage::Tls,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(server.messages().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_is_transient_at_connect() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let server = FakeSmtp::accepting().await?;
    let mut mailbox = server.mailbox();
    mailbox.server.port = port;
    let outcome = Pools::new(settings())
        .send(&mailbox, &envelope()?, MESSAGE.as_bytes())
        .await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Transient {
                stage: Stage::Connect,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    Ok(())
}

/// A host that resolves to loopback, on pools that allow no private network: refused before
/// any connection in every security mode, and the mailbox's fault (permanent at connect).
#[tokio::test]
async fn a_host_resolving_to_a_private_address_is_refused_in_every_mode() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(SmtpSettings {
        outbound: OutboundGuard::default(),
        ..settings()
    });
    for security in Security::ALL {
        for host in ["localhost", "127.0.0.1", "::ffff:127.0.0.1", "[::1]"] {
            let mut mailbox = server.mailbox();
            mailbox.server.host = host.to_owned();
            mailbox.server.security = security;
            let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
            assert_eq!(
                outcome,
                SendOutcome::Permanent {
                    stage: Stage::Connect,
                    code: None,
                    reply: REFUSED.to_owned(),
                },
                "{host} ({security})"
            );
        }
    }
    assert_eq!(server.accepted(), 0, "nothing was connected");
    Ok(())
}

/// Implicit TLS is negotiated over the guard's connection: against a plaintext server the
/// handshake fails at the TLS stage, on a connection the server accepted.
#[tokio::test]
async fn implicit_tls_runs_over_the_guarded_connection() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let mut mailbox = server.mailbox();
    mailbox.server.security = Security::Tls;
    let outcome = Pools::new(settings())
        .send(&mailbox, &envelope()?, MESSAGE.as_bytes())
        .await;
    assert!(
        matches!(
            &outcome,
            SendOutcome::Transient {
                stage: Stage::Tls,
                code: None,
                reply,
            } if reply.contains("TLS handshake failed")
        ),
        "{outcome:?}"
    );
    assert_eq!(server.accepted(), 1);
    assert!(server.messages().is_empty());
    Ok(())
}

#[tokio::test]
async fn two_emails_share_one_connection_until_closed() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(settings());
    let mailbox = server.mailbox();
    for _ in 0..2 {
        let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
        assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.messages().len(), 2);
    assert_eq!(pools.idle_connections(), 1);

    pools.close_all().await;
    assert_eq!(pools.idle_connections(), 0);
    let commands = server.commands();
    assert!(commands.iter().any(|(_, c)| c == "QUIT"), "{commands:?}");
    poll_until(
        Duration::from_secs(5),
        "the connection to close",
        || async { (server.open() == 0).then_some(()) },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_connection_is_renewed_after_messages_per_connection() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(SmtpSettings {
        messages_per_connection: 1,
        ..settings()
    });
    let mailbox = server.mailbox();
    for _ in 0..2 {
        let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
        assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
    }
    assert_eq!(server.accepted(), 2);
    let quits = server
        .commands()
        .iter()
        .filter(|(_, c)| c == "QUIT")
        .count();
    assert_eq!(
        quits, 2,
        "each connection is closed with QUIT after its email"
    );
    assert_eq!(pools.idle_connections(), 0);
    Ok(())
}

#[tokio::test]
async fn concurrent_sends_respect_connections_per_mailbox() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(SmtpSettings {
        connections_per_mailbox: 1,
        messages_per_connection: 1,
        ..settings()
    });
    let mailbox = server.mailbox();
    let envelope = envelope()?;
    let sends = (0..3).map(|_| pools.send(&mailbox, &envelope, MESSAGE.as_bytes()));
    let outcomes = futures::future::join_all(sends).await;
    for outcome in &outcomes {
        assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
    }
    assert_eq!(server.accepted(), 3);
    assert_eq!(server.max_open(), 1, "never two connections at once");

    // Another mailbox has its own limit.
    let pools = Pools::new(SmtpSettings {
        connections_per_mailbox: 1,
        ..settings()
    });
    let other = server.mailbox();
    let (a, b) = tokio::join!(
        pools.send(&mailbox, &envelope, MESSAGE.as_bytes()),
        pools.send(&other, &envelope, MESSAGE.as_bytes())
    );
    assert_eq!((a.kind(), b.kind()), ("accepted", "accepted"));
    assert_eq!(pools.idle_connections(), 2);
    Ok(())
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_retried_once() -> anyhow::Result<()> {
    // The first connection hangs up right after accepting its email.
    let server = FakeSmtp::start(|n, e, _| {
        (n == 0 && e == "DOT").then_some(Act::ReplyAndClose("250 2.0.0 queued".into()))
    })
    .await?;
    let pools = Pools::new(settings());
    let mailbox = server.mailbox();
    let first = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(first.kind(), "accepted", "{first:?}");
    assert_eq!(pools.idle_connections(), 1);
    poll_until(Duration::from_secs(5), "the server to hang up", || async {
        (server.open() == 0).then_some(())
    })
    .await?;

    let second = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(second.kind(), "accepted", "{second:?}");
    assert_eq!(server.accepted(), 2);
    assert_eq!(server.messages().len(), 2, "each email handed over once");
    Ok(())
}

#[tokio::test]
async fn a_changed_login_opens_a_new_connection() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(settings());
    let mut mailbox = server.mailbox();
    let first = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(first.kind(), "accepted", "{first:?}");
    mailbox.login = Some(Login {
        method: domain::mail::LoginMethod::Password,
        username: "ana@acme.test".into(),
        password: SecretString::from("new password".to_owned()),
    });
    let second = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(second.kind(), "accepted", "{second:?}");
    assert_eq!(server.accepted(), 2);
    assert_eq!(pools.idle_connections(), 1, "the old connection was closed");
    Ok(())
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let server = FakeSmtp::accepting().await?;
    let pools = Pools::new(settings());
    let mailbox = server.mailbox();
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
    assert_eq!(pools.close_idle().await, 0, "not idle long enough yet");

    let pools = Pools::new(SmtpSettings {
        idle_timeout: Duration::ZERO,
        ..settings()
    });
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
    poll_until(
        Duration::from_secs(5),
        "the connection to expire",
        || async { (pools.close_idle().await == 1).then_some(()) },
    )
    .await?;
    assert_eq!(pools.idle_connections(), 0);
    Ok(())
}

#[tokio::test]
async fn a_4xx_greeting_is_transient_at_connect() -> anyhow::Result<()> {
    let (outcome, _server) = outcome_with(at("GREETING", Act::reply("421 4.3.2 too busy"))).await?;
    assert_eq!(
        outcome,
        SendOutcome::Transient {
            stage: Stage::Connect,
            code: Some(421),
            reply: "421 4.3.2 too busy".into()
        }
    );
    Ok(())
}

#[tokio::test]
async fn data_not_answered_with_354_sends_no_message() -> anyhow::Result<()> {
    let (outcome, server) = outcome_with(at("DATA", Act::reply("250 2.0.0 ok"))).await?;
    assert!(
        matches!(
            outcome,
            SendOutcome::Transient {
                stage: Stage::Data,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(server.messages().is_empty());
    let commands = server.commands();
    assert!(
        !commands.iter().any(|(_, c)| c.starts_with("From:")),
        "{commands:?}"
    );
    Ok(())
}
