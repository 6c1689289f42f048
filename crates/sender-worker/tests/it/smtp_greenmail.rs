//! The SMTP pools against the real test mail server (GreenMail, plaintext, no AUTH needed):
//! emails sent through one pooled connection arrive, read back through GreenMail's REST API.

use std::time::Duration;

use domain::mail::{Security, Server};
use domain::testing::{get_json, poll_until};
use lettre::address::Envelope;
use sender_worker::smtp::{MailboxServer, Pools, SendOutcome, SmtpSettings};
use uuid::Uuid;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set (source /tmp/infra.env)"))
}

#[tokio::test]
async fn emails_sent_through_the_pool_arrive() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = env("SEQ_TEST_SMTP_ADDR")?.parse()?;
    let api = env("SEQ_TEST_MAIL_API")?;
    let recipient = format!("pool-{}@greenmail.test", Uuid::new_v4().simple());
    let mailbox = MailboxServer {
        mailbox_id: Uuid::new_v4(),
        server: Server {
            host: addr.ip().to_string(),
            port: addr.port(),
            security: Security::None,
        },
        login: None,
    };
    let pools = Pools::new(SmtpSettings {
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        connections_per_mailbox: 1,
        messages_per_connection: 10,
        hello_name: Some("worker.test".into()),
        outbound: domain::testing::test_outbound_guard(),
    });
    let envelope = Envelope::new(Some("sender@acme.test".parse()?), vec![recipient.parse()?])?;
    for n in 1..=2 {
        let message = format!(
            "From: sender@acme.test\r\nTo: {recipient}\r\nSubject: pool test {n}\r\n\
             Message-ID: <pool-{n}-{recipient}>\r\n\r\nEmail number {n}.\r\n.dotted line\r\n"
        );
        let outcome = pools.send(&mailbox, &envelope, message.as_bytes()).await;
        assert!(
            matches!(&outcome, SendOutcome::Accepted { reply } if reply.starts_with("250")),
            "{outcome:?}"
        );
    }
    assert_eq!(
        pools.idle_connections(),
        1,
        "both emails went over one connection"
    );
    pools.close_all().await;

    let url = format!("{api}/api/user/{recipient}/messages/INBOX");
    let messages = poll_until(
        Duration::from_secs(10),
        "both emails in the inbox",
        || async {
            match get_json(&url).await {
                Ok((200, serde_json::Value::Array(messages))) if messages.len() >= 2 => {
                    Some(messages)
                }
                _ => None,
            }
        },
    )
    .await?;
    let mut subjects: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["pool test 1", "pool test 2"]);
    let bodies: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["mimeMessage"].as_str())
        .collect();
    assert!(
        bodies.iter().all(|b| b.contains("\r\n.dotted line")),
        "dot-stuffing undone by the server: {bodies:?}"
    );
    Ok(())
}
