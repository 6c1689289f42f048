//! Mailboxes whose IMAP server fails them: the failure shows on the watch, counts in the
//! metrics, is retried with growing pauses, and never exposes the password.

use domain::testing::{poll_until, the_only_failing_event};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use crate::world::{InboxWorld, WAIT};

#[tokio::test]
async fn an_unreachable_server_is_retried_and_shown_on_the_mailbox() -> anyhow::Result<()> {
    let world = InboxWorld::new(true).await?;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let seller = world.seller_at(closed).await?;
    let watcher = world.watcher().await?;
    let row = world
        .wait_watch(seller.mailbox_id, "several failures recorded", |row| {
            row.status == "error" && row.consecutive_failures >= 3
        })
        .await?;
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("could not connect"), "{error}");
    let metrics_url = format!("{}/metrics", watcher.admin_url);
    let metrics = poll_until(WAIT, "the failure metric", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        text.contains("inbox_watcher_failures_total{kind=\"mailbox\"}")
            .then_some(text)
    })
    .await?;
    // (Values are process-wide, shared with the other tests' watchers.)
    assert!(metrics.contains("inbox_watcher_mailboxes "), "{metrics}");
    watcher.stop().await?;
    Ok(())
}

/// An IMAP server that refuses every login, quoting the command it got (password included)
/// in its answer, as careless servers do.
async fn echoing_refuser() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"* OK fake IMAP ready\r\n").await.ok()?;
                while let Ok(Some(line)) = lines.next_line().await {
                    let tag = line.split_whitespace().next()?.to_owned();
                    let answer = format!("{tag} NO login failed for: {line}\r\n");
                    write.write_all(answer.as_bytes()).await.ok()?;
                }
                Some(())
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn a_refused_login_is_shown_without_the_password() -> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller_at(echoing_refuser().await?).await?;
    let watcher = world.watcher().await?;
    let row = world
        .wait_watch(seller.mailbox_id, "the refusal recorded", |row| {
            row.status == "error" && row.consecutive_failures >= 2
        })
        .await?;
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("login rejected"), "{error}");
    assert!(
        error.contains(&seller.address),
        "the error says who: {error}"
    );
    assert!(
        !error.contains("imap-secret-pw"),
        "password leaked: {error}"
    );
    watcher.stop().await?;
    Ok(())
}

/// A mailbox whose IMAP host resolves to loopback, on a watcher that allows no private
/// network: nothing is connected; the watch and the mailbox (now `error`) say why, the
/// refusal is counted, and the mailbox's failing is announced on `mailbox-events` once,
/// however often the refusal repeats.
#[tokio::test]
async fn a_host_resolving_to_a_private_address_is_refused_and_shown() -> anyhow::Result<()> {
    // Whatever the watcher would reach on that port: nothing may arrive there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let mut world = InboxWorld::new(false).await?;
    world.config.security.allowed_private_networks.clear();
    let seller = world.seller_at(listener.local_addr()?).await?;
    world
        .db
        .exec(&format!(
            "UPDATE mailboxes SET imap_host = 'localhost' WHERE id = '{}'",
            seller.mailbox_id
        ))
        .await?;
    let watcher = world.watcher().await?;
    // Each refusal is recorded on the watch before the mailbox is marked: at the third, the
    // second refusal's marking (of a mailbox already in `error`) is done.
    let row = world
        .wait_watch(seller.mailbox_id, "the refusal recorded", |row| {
            row.status == "error" && row.consecutive_failures >= 3
        })
        .await?;
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("refused: resolves to a private address"),
        "{error}"
    );
    assert!(error.contains("localhost"), "names the host given: {error}");
    assert!(!error.contains("127.0.0.1"), "names no address: {error}");
    let (status, reason): (String, Option<String>) = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use domain::db::schema::mailboxes::dsl;
        dsl::mailboxes
            .find(seller.mailbox_id)
            .select((dsl::status, dsl::status_reason))
            .first(&mut world.db.connect().await?)
            .await?
    };
    assert_eq!(status, "error");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("refused: resolves to a private address")),
        "{reason:?}"
    );
    // Announced once, though refused (and marked) again since.
    let event = the_only_failing_event(
        &world.db,
        &world.config,
        seller.mailbox_id,
        world.workspace_id,
        WAIT,
    )
    .await?;
    assert_eq!(
        event,
        serde_json::json!({
            "mailbox_id": seller.mailbox_id,
            "reason": reason,
            "found_by": "inbox",
        })
    );
    let metrics_url = format!("{}/metrics", watcher.admin_url);
    poll_until(WAIT, "the refusal metrics", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        (text.contains("outbound_connections_refused_total{purpose=\"imap\"}")
            && text.contains("inbox_watcher_failures_total{kind=\"refused\"}"))
        .then_some(())
    })
    .await?;
    assert!(listener.accept().is_err(), "no connection reached the port");
    watcher.stop().await?;
    Ok(())
}
