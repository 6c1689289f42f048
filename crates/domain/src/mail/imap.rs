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

/// A byte stream an IMAP session runs over: plain TCP or TLS, chosen at run time.
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Debug + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Debug + Send> ImapStream for T {}

/// A logged-in IMAP session over whichever transport the mailbox is configured for.
pub type Session = async_imap::Session<Box<dyn ImapStream>>;

/// Connects with the configured security, reads the greeting and logs in. Errors name the
/// step that failed and never contain the password (the caller still passes them through
/// [`super::redact`] before storing them, as servers may echo what they were sent).
pub async fn connect(server: &Server, login: &Login) -> Result<Session, String> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| format!("could not connect: {e}"))?;
    // Replies are small and interactive; Nagle would only add latency to every command.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn ImapStream> = match server.security {
        Security::None => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            Box::new(client.into_inner())
        }
        Security::Tls => {
            let tls = tls_handshake(server, tcp).await?;
            let mut client = async_imap::Client::new(tls);
            greeting(&mut client).await?;
            Box::new(client.into_inner())
        }
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| format!("STARTTLS refused: {e}"))?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            Box::new(tls_handshake(server, client.into_inner()).await?)
        }
    };
    async_imap::Client::new(stream)
        .login(&login.username, login.password.expose_secret())
        .await
        .map_err(|(e, _)| format!("login rejected: {e}"))
}

async fn login_and_logout(server: &Server, login: &Login) -> Result<(), String> {
    let mut session = connect(server, login).await?;
    // The login succeeded, which is what the check is about; a failing LOGOUT is not news.
    let _ = session.logout().await;
    Ok(())
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
