//! The name the worker greets the recipient's server with, as a real SMTP server recorded it
//! (Postfix's smtp-sink writes the EHLO argument into each email it keeps, as `X-Helo-Args`
//! and in its `Received:` line): the configured name, else the host's FQDN or the address
//! literal of the connection, never a bare host name.

use domain::mail::hello;
use uuid::Uuid;

use crate::world::{SmtpSink, Step, World};

const STEP: Step = Step {
    subject: "Hello",
    content: "Hi {{first_name|there}}, a short note.",
    thread_with_previous: false,
};

/// Sends one email through a worker configured by `configure` to a fresh smtp-sink; the
/// EHLO argument the sink recorded.
async fn ehlo_of_one_send(configure: impl FnOnce(&mut World)) -> anyhow::Result<String> {
    let sink = SmtpSink::start(&[]).await?;
    let mut world = World::new(sink.addr, &[STEP]).await?;
    configure(&mut world);
    let to = format!("ehlo-{}@example.org", Uuid::now_v7().simple());
    let message = world.queue(world.enroll(&to, None).await?, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    worker.stop().await?;
    let emails = sink.received()?;
    sink.stop().await?;
    anyhow::ensure!(
        emails.len() == 1,
        "{} emails kept by the sink",
        emails.len()
    );
    let email = &emails[0];
    let helo = email
        .lines()
        .find_map(|line| line.strip_prefix("X-Helo-Args: "))
        .ok_or_else(|| anyhow::anyhow!("no X-Helo-Args in\n{email}"))?
        .trim()
        .to_owned();
    assert!(
        email.contains(&format!("Received: from {helo} ")),
        "the Received line names the EHLO argument {helo}:\n{email}"
    );
    Ok(helo)
}

#[tokio::test]
async fn the_configured_hello_name_is_what_the_server_sees() -> anyhow::Result<()> {
    let helo = ehlo_of_one_send(|world| {
        world.config.sender_worker.hello_name = "mail.acme.test".to_owned();
    })
    .await?;
    assert_eq!(helo, "mail.acme.test");
    Ok(())
}

#[tokio::test]
async fn unset_the_worker_greets_with_the_host_fqdn_or_the_local_address_literal()
-> anyhow::Result<()> {
    let helo = ehlo_of_one_send(|world| {
        world.config.sender_worker.hello_name = String::new();
    })
    .await?;
    // The sink listens on 127.0.0.1, so the connection's local address is 127.0.0.1 too.
    let expected = hello::host_fqdn()
        .await
        .unwrap_or_else(|| "[127.0.0.1]".to_owned());
    assert_eq!(helo, expected);
    assert!(
        hello::is_fqdn(&helo) || helo == "[127.0.0.1]",
        "{helo} is neither a FQDN nor an address literal"
    );
    let short = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    if !short.trim().contains('.') {
        assert_ne!(helo, short.trim(), "the bare host name was sent");
    }
    Ok(())
}
