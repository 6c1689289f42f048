//! SMTP connections of a mailbox: lettre's `AsyncSmtpConnection` over a TCP connection the
//! outbound guard made (lettre never resolves the host itself), with implicit TLS negotiated
//! here and STARTTLS by lettre, both over that connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{CheckError, Login, LoginMethod, Security, Server, hello, tls_handshake};
use crate::outbound::{self, OutboundGuard, Purpose};

/// Why [`open`] gave no stream.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Refused by the guard, or the host could not be resolved or connected to.
    #[error(transparent)]
    Connect(#[from] outbound::ConnectError),
    /// The implicit TLS handshake failed (the message says how).
    #[error("{0}")]
    Tls(String),
}

/// An SMTP connection's byte stream and the local address of its TCP connection (the EHLO
/// name falls back to its address literal: [`super::hello`]).
pub struct Opened {
    pub stream: Box<dyn AsyncTokioStream>,
    pub local_addr: SocketAddr,
}

/// The byte stream an SMTP session starts on, for
/// `AsyncSmtpConnection::connect_with_transport`: a TCP connection to `server` made by
/// `guard` (within `timeout`), wrapped in TLS from the first byte when the security is
/// implicit TLS. With STARTTLS, lettre upgrades this same stream later
/// (`AsyncSmtpConnection::starttls`). TCP_NODELAY is set: a send is a few small writes
/// (commands, and with lettre's `message()` the final dot apart from the message), and with
/// Nagle's algorithm a small write waits for the server's delayed ACK of the one before it
/// (tens of ms per email).
pub async fn open(
    guard: &OutboundGuard,
    server: &Server,
    timeout: Duration,
) -> Result<Opened, OpenError> {
    let tcp = guard
        .connect(Purpose::Smtp, &server.host, server.port, timeout)
        .await?;
    let local_addr = tcp.local_addr().map_err(outbound::ConnectError::Connect)?;
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set on an SMTP connection");
    }
    let stream: Box<dyn AsyncTokioStream> = match server.security {
        Security::None | Security::Starttls => Box::new(tcp),
        Security::Tls => {
            let tls = tls_handshake(&server.host, tcp)
                .await
                .map_err(OpenError::Tls)?;
            Box::new(ImplicitTls(tls))
        }
    };
    Ok(Opened { stream, local_addr })
}

/// lettre's TLS settings for STARTTLS: the certificate is checked against the host name.
pub fn tls_parameters(server: &Server) -> Result<TlsParameters, String> {
    let host = server.host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    TlsParameters::new_rustls(host.to_owned()).map_err(|e| format!("TLS setup failed: {e}"))
}

/// A TLS stream over the guarded TCP connection, in the shape lettre takes.
#[derive(Debug)]
struct ImplicitTls(TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Connects with the configured security (STARTTLS is required, never opportunistic), says
/// EHLO, authenticates when a login is given, and quits: `Ok` when the server accepted all of
/// it within `timeout`.
pub async fn check(
    guard: &OutboundGuard,
    server: &Server,
    login: Option<&Login>,
    timeout: Duration,
) -> Result<(), CheckError> {
    let at = format!("{}:{} ({})", server.host, server.port, server.security);
    match tokio::time::timeout(timeout, login_and_quit(guard, server, login, timeout)).await {
        Err(_) => Err(CheckError::new(
            format!(
                "SMTP server {at} did not complete the check within {} s",
                timeout.as_secs()
            ),
            None,
        )),
        Ok(Err(message)) => Err(CheckError::new(
            format!("SMTP server {at}: {message}"),
            login,
        )),
        Ok(Ok(())) => Ok(()),
    }
}

async fn login_and_quit(
    guard: &OutboundGuard,
    server: &Server,
    login: Option<&Login>,
    timeout: Duration,
) -> Result<(), String> {
    let opened = open(guard, server, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let fqdn = hello::host_fqdn().await;
    let hello = hello::choose(None, fqdn.as_deref(), opened.local_addr.ip());
    let mut connection = AsyncSmtpConnection::connect_with_transport(opened.stream, &hello)
        .await
        .map_err(|e| describe(&e))?;
    if server.security == Security::Starttls {
        if !connection.can_starttls() {
            return Err("the server does not offer STARTTLS, which is required".to_owned());
        }
        connection
            .starttls(tls_parameters(server)?, &hello)
            .await
            .map_err(|e| describe(&e))?;
    }
    if let Some(login) = login {
        let credentials = Credentials::new(
            login.username.clone(),
            login.password.expose_secret().to_owned(),
        );
        connection
            .auth(mechanisms(login.method), &credentials)
            .await
            .map_err(|e| describe(&e))?;
    }
    if !connection.test_connected().await {
        return Err("closed the connection after login".to_owned());
    }
    connection.quit().await.map_err(|e| describe(&e))?;
    Ok(())
}

/// The SASL mechanisms offered for `method`, in order of preference.
pub fn mechanisms(method: LoginMethod) -> &'static [Mechanism] {
    match method {
        LoginMethod::Password => &[Mechanism::Plain, Mechanism::Login],
        LoginMethod::Xoauth2 => &[Mechanism::Xoauth2],
    }
}

/// lettre's text names the stage and carries the server's reply, e.g. `permanent error
/// (535): 5.7.8 Authentication failed` or `Connection error: Connection reset by peer`.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    if error.is_timeout() {
        format!("timed out: {error}")
    } else if error.is_response() {
        format!("unexpected reply (not an SMTP server?): {error}")
    } else {
        error.to_string()
    }
}
