//! IMAP connections of a mailbox (reply detection), through async-imap over tokio.

use std::fmt::Debug;
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{CheckError, Login, Security, Server, tls_config};

/// Connects with the configured security, reads the greeting, logs in and logs out: `Ok`
/// when the server accepted the login within `timeout`.
pub async fn check(server: &Server, login: &Login, timeout: Duration) -> Result<(), CheckError> {
    let at = format!("{}:{} ({})", server.host, server.port, server.security);
    match tokio::time::timeout(timeout, login_and_logout(server, login)).await {
        Err(_) => Err(CheckError::new(
            format!(
                "IMAP server {at} did not complete the check within {} s",
                timeout.as_secs()
            ),
            None,
        )),
        Ok(Err(message)) => Err(CheckError::new(
            format!("IMAP server {at}: {message}"),
            Some(login),
        )),
        Ok(Ok(())) => Ok(()),
    }
}

async fn login_and_logout(server: &Server, login: &Login) -> Result<(), String> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| format!("could not connect: {e}"))?;
    match server.security {
        Security::None => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            authenticate(client, login).await
        }
        Security::Tls => {
            let tls = tls_handshake(server, tcp).await?;
            let mut client = async_imap::Client::new(tls);
            greeting(&mut client).await?;
            authenticate(client, login).await
        }
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| format!("STARTTLS refused: {e}"))?;
            let tls = tls_handshake(server, client.into_inner()).await?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            authenticate(async_imap::Client::new(tls), login).await
        }
    }
}

async fn tls_handshake(
    server: &Server,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(server.host.clone())
        .map_err(|_| format!("`{}` is not a valid TLS server name", server.host))?;
    TlsConnector::from(tls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}

async fn greeting<S>(client: &mut async_imap::Client<S>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let response = client
        .read_response()
        .await
        .map_err(|e| {
            // async-imap's parse errors end with what the server sent; that part is the news.
            let text = e.to_string();
            match text.split_once(" during parsing of ") {
                Some((_, sent)) => format!("not an IMAP server? It greeted with {sent}"),
                None => format!("unreadable greeting (not an IMAP server?): {text}"),
            }
        })?
        .ok_or("the server closed the connection before greeting")?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        other => Err(format!(
            "unexpected greeting (not an IMAP server?): {other:?}"
        )),
    }
}

async fn authenticate<S>(client: async_imap::Client<S>, login: &Login) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let mut session = client
        .login(&login.username, login.password.expose_secret())
        .await
        .map_err(|(e, _)| format!("login rejected: {e}"))?;
    // The login succeeded, which is what the check is about; a failing LOGOUT is not news.
    let _ = session.logout().await;
    Ok(())
}
