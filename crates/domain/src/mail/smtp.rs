//! SMTP connections of a mailbox, through lettre.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{CheckError, Login, Security, Server};

/// A transport for this server: the configured security (STARTTLS is required, never
/// opportunistic), AUTH with the login when there is one, `timeout` on each network step.
pub fn transport(
    server: &Server,
    login: Option<&Login>,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, CheckError> {
    let tls = match server.security {
        Security::None => Tls::None,
        Security::Starttls => Tls::Required(tls_parameters(server)?),
        Security::Tls => Tls::Wrapper(tls_parameters(server)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
        .port(server.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(login) = login {
        builder = builder.credentials(Credentials::new(
            login.username.clone(),
            login.password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

fn tls_parameters(server: &Server) -> Result<TlsParameters, CheckError> {
    TlsParameters::new_rustls(server.host.clone())
        .map_err(|e| CheckError::new(format!("TLS setup failed: {e}"), None))
}

/// Connects with the configured security, says EHLO, authenticates when a login is given,
/// and quits: `Ok` when the server accepted all of it within `timeout`.
pub async fn check(
    server: &Server,
    login: Option<&Login>,
    timeout: Duration,
) -> Result<(), CheckError> {
    let transport = transport(server, login, timeout)?;
    let at = format!("{}:{} ({})", server.host, server.port, server.security);
    match tokio::time::timeout(timeout, transport.test_connection()).await {
        Err(_) => Err(CheckError::new(
            format!(
                "SMTP server {at} did not complete the check within {} s",
                timeout.as_secs()
            ),
            None,
        )),
        Ok(Err(error)) => Err(CheckError::new(
            format!("SMTP server {at}: {}", describe(&error)),
            login,
        )),
        Ok(Ok(false)) => Err(CheckError::new(
            format!("SMTP server {at} closed the connection after login"),
            None,
        )),
        Ok(Ok(true)) => Ok(()),
    }
}

/// lettre's text names the stage and carries the server's reply, e.g. `permanent error
/// (535): 5.7.8 Authentication failed` or `Connection error: Connection refused`.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    if error.is_timeout() {
        format!("timed out: {error}")
    } else if error.is_response() {
        format!("unexpected reply (not an SMTP server?): {error}")
    } else {
        error.to_string()
    }
}
