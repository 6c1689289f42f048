//! One SMTP connection driven step by step, so a failure names its stage.

use std::future::Future;
use std::time::Duration;

use domain::mail::smtp::{self, OpenError};
use domain::mail::{Login, Security, Server, hello};
use domain::outbound::ConnectError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::{Response, Severity};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::SmtpSettings;
use super::outcome::{Cause, Failure, Stage};

/// Runs `step` until `deadline`, classifying its error or timeout as a failure of `stage`.
async fn step<T>(
    stage: Stage,
    deadline: Instant,
    budget: Duration,
    step: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout_at(deadline, step).await {
        Err(_) => Err(Failure::new(stage, Cause::TimedOut(budget))),
        Ok(Err(error)) => Err(Failure::from_lettre(stage, &error)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Connects through the outbound guard, reads the greeting, says EHLO, secures the
/// connection as configured (STARTTLS is required when configured, never opportunistic) and
/// authenticates when a login is given, all within the connect timeout. EHLO says `hello`
/// when configured, else the host's FQDN or the connection's local address literal. A host the guard
/// refuses is a `Refused` failure at `Connect` (the mailbox's fault: it goes to `error`),
/// and nothing is connected.
pub(crate) async fn connect(
    settings: &SmtpSettings,
    hello: Option<&ClientId>,
    server: &Server,
    login: Option<&Login>,
) -> Result<AsyncSmtpConnection, Failure> {
    let budget = settings.connect_timeout;
    let deadline = Instant::now() + budget;
    let starttls = match server.security {
        Security::Starttls => Some(
            smtp::tls_parameters(server)
                .map_err(|e| Failure::new(Stage::Tls, Cause::Refused(e)))?,
        ),
        Security::None | Security::Tls => None,
    };
    // The guard resolves the host once, refuses non-public addresses and connects to what it
    // checked; implicit TLS is negotiated over that connection (certificate checked against
    // the host name), STARTTLS later by lettre over the same one.
    let connecting = async {
        let opened = smtp::open(&settings.outbound, server, budget)
            .await
            .map_err(|error| match error {
                OpenError::Connect(refused @ ConnectError::Refused) => {
                    Failure::new(Stage::Connect, Cause::Refused(refused.to_string()))
                }
                OpenError::Connect(other) => {
                    Failure::new(Stage::Connect, Cause::Broken(other.to_string()))
                }
                OpenError::Tls(message) => Failure::new(Stage::Tls, Cause::Broken(message)),
            })?;
        let fqdn = hello::host_fqdn().await;
        let hello = hello::choose(hello, fqdn.as_deref(), opened.local_addr.ip());
        AsyncSmtpConnection::connect_with_transport(opened.stream, &hello)
            .await
            .map(|connection| (connection, hello))
            .map_err(|error| Failure::from_lettre(Stage::Connect, &error))
    };
    let (mut connection, hello) = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => return Err(Failure::new(Stage::Connect, Cause::TimedOut(budget))),
        Ok(Err(failure)) => return Err(failure),
        Ok(Ok(connected)) => connected,
    };
    metrics::counter!("smtp_connections_opened_total").increment(1);

    if let Some(tls) = starttls {
        if !connection.can_starttls() {
            let failure = Failure::new(
                Stage::Tls,
                Cause::Refused("the server does not offer STARTTLS, which is required".into()),
            );
            return Err(close_after(connection, failure, settings).await);
        }
        let starttls = step(
            Stage::Tls,
            deadline,
            budget,
            connection.starttls(tls, &hello),
        )
        .await;
        if let Err(failure) = starttls {
            return Err(close_after(connection, failure, settings).await);
        }
    }

    if let Some(login) = login {
        let credentials = Credentials::new(
            login.username.clone(),
            login.password.expose_secret().to_owned(),
        );
        let auth = step(
            Stage::Auth,
            deadline,
            budget,
            connection.auth(smtp::mechanisms(login.method), &credentials),
        )
        .await;
        if let Err(failure) = auth {
            return Err(close_after(connection, failure, settings).await);
        }
    }
    Ok(connection)
}

/// Sends one email: MAIL FROM, RCPT TO for each recipient, DATA, then the message (lettre
/// dot-stuffs it and sends the final dot). Returns the reply after the final dot.
pub(crate) async fn deliver(
    connection: &mut AsyncSmtpConnection,
    settings: &SmtpSettings,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Response, Failure> {
    let mut parameters = Vec::new();
    let addresses = envelope.from().into_iter().chain(envelope.to());
    if addresses.map(AsRef::<str>::as_ref).any(|a| !a.is_ascii()) {
        if !connection
            .server_info()
            .supports_feature(Extension::SmtpUtfEight)
        {
            return Err(Failure::new(
                Stage::MailFrom,
                Cause::Refused("non-ASCII addresses but the server lacks SMTPUTF8".into()),
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
        {
            return Err(Failure::new(
                Stage::MailFrom,
                Cause::Refused("a non-ASCII message but the server lacks 8BITMIME".into()),
            ));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }

    let budget = settings.command_timeout;
    let mail = Mail::new(envelope.from().cloned(), parameters);
    let deadline = Instant::now() + budget;
    let reply = step(Stage::MailFrom, deadline, budget, connection.command(mail)).await?;
    expect(Stage::MailFrom, &reply, Severity::PositiveCompletion)?;
    for recipient in envelope.to() {
        let rcpt = Rcpt::new(recipient.clone(), Vec::new());
        let deadline = Instant::now() + budget;
        let reply = step(Stage::RcptTo, deadline, budget, connection.command(rcpt)).await?;
        expect(Stage::RcptTo, &reply, Severity::PositiveCompletion)?;
    }
    let deadline = Instant::now() + budget;
    let reply = step(Stage::Data, deadline, budget, connection.command(Data)).await?;
    // Anything but 354 means the server is not reading a message: sending it would have its
    // lines taken as commands.
    expect(Stage::Data, &reply, Severity::PositiveIntermediate)?;

    let budget = settings.data_timeout;
    let deadline = Instant::now() + budget;
    let reply = step(
        Stage::AfterData,
        deadline,
        budget,
        connection.message(message),
    )
    .await?;
    expect(Stage::AfterData, &reply, Severity::PositiveCompletion)?;
    Ok(reply)
}

/// lettre takes any 2xx or 3xx reply as success; each step expects one of them.
fn expect(stage: Stage, reply: &Response, severity: Severity) -> Result<(), Failure> {
    if reply.code().severity == severity {
        return Ok(());
    }
    let lines: Vec<&str> = reply.message().collect();
    Err(Failure::new(
        stage,
        Cause::Broken(format!(
            "unexpected reply {} {}",
            reply.code(),
            lines.join(" ")
        )),
    ))
}

/// Says QUIT (bounded by the command timeout) and closes the connection.
pub(crate) async fn quit(mut connection: AsyncSmtpConnection, settings: &SmtpSettings) {
    if !connection.has_broken() {
        let _ = tokio::time::timeout(settings.command_timeout, connection.quit()).await;
    }
    metrics::counter!("smtp_connections_closed_total").increment(1);
}

/// Ends a connection after `failure`: QUIT when the server is still talking to us, a plain
/// close otherwise.
pub(crate) async fn close_after(
    connection: AsyncSmtpConnection,
    failure: Failure,
    settings: &SmtpSettings,
) -> Failure {
    if failure.connection_alive() {
        quit(connection, settings).await;
    } else {
        drop(connection);
        metrics::counter!("smtp_connections_closed_total").increment(1);
    }
    failure
}
