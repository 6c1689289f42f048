//! Sends to servers that pipeline (RFC 2920) and to servers that do not: Postfix's smtp-sink,
//! which pipelines unless `-p`, and the scripted server for the refusals smtp-sink cannot make
//! while pipelining (its `-f` and `-r` turn PIPELINING off).

use std::time::Duration;

use domain::mail::{Security, Server};
use domain::testing::{SmtpSink, poll_until};
use lettre::address::Envelope;
use sender_worker::smtp::{MailboxServer, Pools, SendOutcome, Stage};
use uuid::Uuid;

use crate::fake_smtp::{Act, EHLO_PIPELINING, FakeSmtp};
use crate::smtp_pools::settings;

/// Lines starting with dots (one a lone dot) and no line break at the end.
const MESSAGE: &str = "From: sender@acme.test\r\nTo: a@dest.test, b@dest.test\r\n\
Subject: dots\r\n\r\n.starts with a dot\r\n.\r\n..two dots\r\na . in the middle\r\n\r\n\
.\r\nno line break at the end";

fn envelope() -> anyhow::Result<Envelope> {
    Ok(Envelope::new(
        Some("sender@acme.test".parse()?),
        vec!["a@dest.test".parse()?, "b@dest.test".parse()?],
    )?)
}

fn sink_mailbox(sink: &SmtpSink) -> MailboxServer {
    MailboxServer {
        mailbox_id: Uuid::new_v4(),
        server: Server {
            host: sink.addr.ip().to_string(),
            port: sink.addr.port(),
            security: Security::None,
        },
        login: None,
    }
}

/// A dump of smtp-sink: its headers (`X-…` and its `Received:` line) and the message as it
/// received it, dot-stuffing undone, lines ended with LF.
fn dump_parts(dump: &str) -> anyhow::Result<(Vec<&str>, String)> {
    let mut lines = dump.split('\n');
    let mut headers = Vec::new();
    for line in lines.by_ref() {
        headers.push(line);
        if line.starts_with("Received:") {
            break;
        }
    }
    let mut body: Vec<&str> = lines.skip_while(|l| l.starts_with('\t')).collect();
    anyhow::ensure!(!body.is_empty(), "no message in the dump:\n{dump}");
    // smtp-sink ends each dump with an empty line of its own.
    anyhow::ensure!(body.pop() == Some(""), "{dump}");
    Ok((headers, body.join("\n")))
}

#[tokio::test]
async fn emails_arrive_intact_at_smtp_sink_with_and_without_pipelining() -> anyhow::Result<()> {
    for options in [&[][..], &["-p"][..]] {
        let sink = SmtpSink::start(options).await?;
        let pools = Pools::new(settings());
        let mailbox = sink_mailbox(&sink);
        for _ in 0..2 {
            let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
            assert!(
                matches!(&outcome, SendOutcome::Accepted { reply } if reply.starts_with("250")),
                "{options:?}: {outcome:?}"
            );
        }
        assert_eq!(pools.idle_connections(), 1, "both over one connection");
        pools.close_all().await;

        let dumps = sink.received()?;
        assert_eq!(dumps.len(), 2, "{options:?}");
        for dump in &dumps {
            let (headers, body) = dump_parts(dump)?;
            assert!(
                headers.contains(&"X-Mail-Args: <sender@acme.test>"),
                "{dump}"
            );
            assert!(headers.contains(&"X-Rcpt-Args: <a@dest.test>"), "{dump}");
            assert!(headers.contains(&"X-Rcpt-Args: <b@dest.test>"), "{dump}");
            // The line break before the final dot ends the last line.
            assert_eq!(
                body,
                format!("{}\n", MESSAGE.replace("\r\n", "\n")),
                "{options:?}"
            );
        }
        sink.stop().await?;
    }
    Ok(())
}

/// smtp-sink `-Q rcpt` answers RCPT TO with 421 and hangs up, and still announces PIPELINING:
/// the refusal comes inside the pipelined group, after MAIL FROM's reply.
#[tokio::test]
async fn a_recipient_refused_inside_a_pipelined_group_is_reported_as_without_pipelining()
-> anyhow::Result<()> {
    let mut outcomes = Vec::new();
    for options in [&["-Q", "rcpt"][..], &["-p", "-Q", "rcpt"][..]] {
        let sink = SmtpSink::start(options).await?;
        let pools = Pools::new(settings());
        let outcome = pools
            .send(&sink_mailbox(&sink), &envelope()?, MESSAGE.as_bytes())
            .await;
        assert_eq!(pools.idle_connections(), 0, "{options:?}");
        let dumps = sink.received()?;
        assert!(
            dumps.iter().all(|d| !d.contains("Subject:")),
            "{options:?}: {dumps:?}"
        );
        sink.stop().await?;
        outcomes.push(outcome);
    }
    assert_eq!(
        outcomes[0],
        SendOutcome::Transient {
            stage: Stage::RcptTo,
            code: Some(421),
            reply: "421 4.0.0 Server closing connection".into()
        }
    );
    assert_eq!(outcomes[0], outcomes[1]);
    Ok(())
}

/// A scripted server, pipelining or not, that otherwise replies as `script` says.
async fn scripted(
    pipelining: bool,
    script: impl Fn(&str, &str) -> Option<Act> + Send + Sync + 'static,
) -> anyhow::Result<FakeSmtp> {
    FakeSmtp::start(move |_, event, line| {
        if pipelining && event == "EHLO" {
            Some(Act::reply(EHLO_PIPELINING))
        } else {
            script(event, line)
        }
    })
    .await
}

#[tokio::test]
async fn a_pipelining_server_gets_the_commands_in_one_write_and_the_exact_message()
-> anyhow::Result<()> {
    for pipelining in [true, false] {
        let server = scripted(pipelining, |_, _| None).await?;
        let pools = Pools::new(settings());
        let mailbox = server.mailbox();
        for _ in 0..2 {
            let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
            assert_eq!(outcome.kind(), "accepted", "{outcome:?}");
        }
        pools.close_all().await;
        // The message's own CRLF before the final dot is part of what the server reads.
        assert_eq!(
            server.messages(),
            [format!("{MESSAGE}\r\n"), format!("{MESSAGE}\r\n")]
        );
        let ehlo = vec!["EHLO worker.test".to_owned()];
        let email: Vec<String> = [
            "MAIL FROM:<sender@acme.test>",
            "RCPT TO:<a@dest.test>",
            "RCPT TO:<b@dest.test>",
            "DATA",
        ]
        .map(str::to_owned)
        .to_vec();
        let quit = vec!["QUIT".to_owned()];
        let expected = if pipelining {
            vec![ehlo.clone(), ehlo, email.clone(), email, quit]
        } else {
            let mut one_by_one = vec![ehlo.clone(), ehlo];
            for _ in 0..2 {
                one_by_one.extend(email.iter().map(|c| vec![c.clone()]));
            }
            one_by_one.push(quit);
            one_by_one
        };
        assert_eq!(
            server.command_groups(0),
            expected,
            "pipelining: {pipelining}"
        );
    }
    Ok(())
}

/// Refusals inside a pipelined group, each against the same script without pipelining: the
/// same outcome, no message, and the next send still works (on a new connection).
#[tokio::test]
async fn refusals_inside_a_pipelined_group_are_classified_as_without_pipelining()
-> anyhow::Result<()> {
    type Script = fn(&str, &str) -> Option<Act>;
    let cases: [(&str, Script, SendOutcome); 5] = [
        (
            "every recipient refused, DATA refused",
            |e, _| match e {
                "RCPT" => Some(Act::reply("550 5.1.1 no such user")),
                "DATA" => Some(Act::reply("554 5.5.1 no valid recipients")),
                _ => None,
            },
            permanent(Stage::RcptTo, 550, "550 5.1.1 no such user"),
        ),
        (
            "the second recipient refused, DATA answered 354",
            |e, line| {
                (e == "RCPT" && line.contains("b@dest.test"))
                    .then(|| Act::reply("450 4.2.0 mailbox busy"))
            },
            SendOutcome::Transient {
                stage: Stage::RcptTo,
                code: Some(450),
                reply: "450 4.2.0 mailbox busy".into(),
            },
        ),
        (
            "MAIL FROM refused, the rest answered as if it had not been",
            |e, _| (e == "MAIL").then(|| Act::reply("550 5.7.1 sender refused")),
            permanent(Stage::MailFrom, 550, "550 5.7.1 sender refused"),
        ),
        (
            "DATA refused",
            |e, _| (e == "DATA").then(|| Act::reply("451 4.3.0 try later")),
            SendOutcome::Transient {
                stage: Stage::Data,
                code: Some(451),
                reply: "451 4.3.0 try later".into(),
            },
        ),
        (
            "a recipient refused and the connection closed",
            |e, _| (e == "RCPT").then(|| Act::ReplyAndClose("421 4.3.2 bye".into())),
            SendOutcome::Transient {
                stage: Stage::RcptTo,
                code: Some(421),
                reply: "421 4.3.2 bye".into(),
            },
        ),
    ];
    for (case, script, expected) in cases {
        for pipelining in [true, false] {
            let server = scripted(pipelining, script).await?;
            let pools = Pools::new(settings());
            let mailbox = server.mailbox();
            let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
            assert_eq!(outcome, expected, "{case} (pipelining: {pipelining})");
            assert!(server.messages().is_empty(), "{case}: a message was sent");
            assert_eq!(pools.idle_connections(), 0, "{case}");
            poll_until(
                Duration::from_secs(5),
                "the connection to close",
                || async { (server.open() == 0).then_some(()) },
            )
            .await?;
            let commands: Vec<String> = server.commands().into_iter().map(|(_, c)| c).collect();
            assert!(
                !commands.iter().any(|c| c.starts_with("From:")),
                "{case}: the message went as commands: {commands:?}"
            );
            assert_eq!(server.accepted(), 1, "{case}");
        }
    }
    Ok(())
}

/// After a refused command a server that still answers DATA with 354 is reading a message:
/// nothing more is written, not even QUIT (it would be taken as the message), the connection
/// is closed, and the server, never seeing the final dot, keeps nothing.
#[tokio::test]
async fn after_a_refusal_a_354_to_data_closes_the_connection_without_a_word() -> anyhow::Result<()>
{
    let server = scripted(true, |e, line| {
        (e == "RCPT" && line.contains("a@dest.test")).then(|| Act::reply("550 5.1.1 no such user"))
    })
    .await?;
    let pools = Pools::new(settings());
    let mailbox = server.mailbox();
    let outcome = pools.send(&mailbox, &envelope()?, MESSAGE.as_bytes()).await;
    assert_eq!(
        outcome,
        permanent(Stage::RcptTo, 550, "550 5.1.1 no such user")
    );
    poll_until(
        Duration::from_secs(5),
        "the connection to close",
        || async { (server.open() == 0).then_some(()) },
    )
    .await?;
    assert!(server.messages().is_empty());
    assert_eq!(
        server.unfinished_messages(),
        [""],
        "nothing was written after the 354"
    );
    let last = server.command_groups(0).pop().unwrap_or_default();
    assert_eq!(
        last,
        [
            "MAIL FROM:<sender@acme.test>",
            "RCPT TO:<a@dest.test>",
            "RCPT TO:<b@dest.test>",
            "DATA"
        ],
        "nothing after the group"
    );

    // A refusal with DATA refused too leaves the session usable: it ends with QUIT.
    let server = scripted(true, |e, _| match e {
        "RCPT" => Some(Act::reply("550 5.1.1 no such user")),
        "DATA" => Some(Act::reply("554 5.5.1 no valid recipients")),
        _ => None,
    })
    .await?;
    let outcome = pools
        .send(&server.mailbox(), &envelope()?, MESSAGE.as_bytes())
        .await;
    assert_eq!(
        outcome,
        permanent(Stage::RcptTo, 550, "550 5.1.1 no such user")
    );
    assert_eq!(
        server.command_groups(0).pop(),
        Some(vec!["QUIT".to_owned()])
    );
    Ok(())
}

fn permanent(stage: Stage, code: u16, reply: &str) -> SendOutcome {
    SendOutcome::Permanent {
        stage,
        code: Some(code),
        reply: reply.into(),
    }
}
