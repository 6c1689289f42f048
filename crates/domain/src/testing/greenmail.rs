//! The GreenMail test server `cargo xtask test` runs (authentication disabled: any password
//! logs in; a user exists once something was delivered to it): its addresses, delivering a
//! raw email through its SMTP as a remote mail server would, and reading an inbox through its
//! REST API.

use std::net::SocketAddr;

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::http::get_json;

fn addr(var: &str) -> anyhow::Result<SocketAddr> {
    let value = std::env::var(var)
        .map_err(|_| anyhow::anyhow!("{var} is not set; run `cargo xtask test`"))?;
    Ok(value.parse()?)
}

/// GreenMail's SMTP address (`SEQ_TEST_SMTP_ADDR`).
pub fn smtp_addr() -> anyhow::Result<SocketAddr> {
    addr("SEQ_TEST_SMTP_ADDR")
}

/// GreenMail's IMAP address (`SEQ_TEST_IMAP_ADDR`).
pub fn imap_addr() -> anyhow::Result<SocketAddr> {
    addr("SEQ_TEST_IMAP_ADDR")
}

/// Delivers `raw` (RFC 5322, CRLF line ends) from `from` to `to` through GreenMail's SMTP.
/// GreenMail refuses the empty envelope sender real bounces come with: give the
/// MAILER-DAEMON's address instead (readers of the inbox see headers and body only).
pub async fn deliver(from: &str, to: &str, raw: &str) -> anyhow::Result<()> {
    let smtp = smtp_addr()?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.ip().to_string())
        .port(smtp.port())
        .build();
    let envelope = lettre::address::Envelope::new(Some(from.parse()?), vec![to.parse()?])?;
    transport.send_raw(&envelope, raw.as_bytes()).await?;
    Ok(())
}

/// The raw emails GreenMail holds in `address`'s inbox, oldest first.
pub async fn received(address: &str) -> anyhow::Result<Vec<String>> {
    let api = std::env::var("SEQ_TEST_MAIL_API")
        .map_err(|_| anyhow::anyhow!("SEQ_TEST_MAIL_API is not set; run `cargo xtask test`"))?;
    let (status, body) = get_json(&format!("{api}/api/user/{address}/messages/INBOX")).await?;
    let unknown_user = body["message"]
        .as_str()
        .is_some_and(|m| m.contains("not found"));
    if status == 404 || (status == 400 && unknown_user) {
        return Ok(Vec::new());
    }
    anyhow::ensure!(status == 200, "GreenMail answered {status}: {body}");
    Ok(body
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m["mimeMessage"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Files `raw` into `folder` of `address`'s account over IMAP (created when missing), unread,
/// as a server's spam filter files a message into Junk.
pub async fn file_into(address: &str, folder: &str, raw: &str) -> anyhow::Result<()> {
    let mut session = imap_session(address).await?;
    ensure_folder(&mut session, folder).await?;
    session.append(folder, None, None, raw.as_bytes()).await?;
    let _ = session.logout().await;
    Ok(())
}

/// Creates `folder` in `address`'s account unless it exists (a user's Junk folder).
pub async fn create_folder(address: &str, folder: &str) -> anyhow::Result<()> {
    let mut session = imap_session(address).await?;
    ensure_folder(&mut session, folder).await?;
    let _ = session.logout().await;
    Ok(())
}

async fn ensure_folder(
    session: &mut crate::mail::imap::Session,
    folder: &str,
) -> anyhow::Result<()> {
    use futures::TryStreamExt as _;
    let names: Vec<_> = session
        .list(Some(""), Some("\"*\""))
        .await?
        .try_collect()
        .await?;
    if !names.iter().any(|n| n.name() == folder) {
        session.create(folder).await?;
    }
    Ok(())
}

/// A logged-in IMAP session of `address` (any password: authentication is disabled).
pub async fn imap_session(address: &str) -> anyhow::Result<crate::mail::imap::Session> {
    use crate::mail::{Login, Security, Server};
    let imap = imap_addr()?;
    let server = Server {
        host: imap.ip().to_string(),
        port: imap.port(),
        security: Security::None,
    };
    let login = Login {
        method: crate::mail::LoginMethod::Password,
        username: address.to_owned(),
        password: secrecy::SecretString::from("any"),
    };
    Ok(crate::mail::imap::connect(
        &super::test_outbound_guard(),
        &server,
        &login,
        std::time::Duration::from_secs(30),
    )
    .await?)
}
