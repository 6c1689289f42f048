//! One SMTP connection driven step by step, so a failure names its stage.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use domain::mail::smtp::{self, OpenError};
use domain::mail::{Login, Security, Server, hello};
use domain::outbound::ConnectError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::{Response, Severity};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::SmtpSettings;
use super::outcome::{Cause, Failure, Stage};

/// An SMTP connection with what lettre's `ServerInfo` does not keep.
pub(crate) struct Connection {
    smtp: AsyncSmtpConnection,
    /// The server announced PIPELINING (RFC 2920): a send's commands go in one write.
    pipelining: bool,
    /// The server may be waiting for a message that will never come (it answered 354 to a
    /// pipelined DATA after refusing an earlier command): anything written now, even QUIT,
    /// would be taken as the message, so the connection can only be closed.
    unusable: bool,
}

impl Connection {
    /// Whether the connection can no longer be used, not even for QUIT.
    pub(crate) fn has_broken(&self) -> bool {
        self.unusable || self.smtp.has_broken()
    }
}

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
/// connection as configured (STARTTLS is required when configured, never opportunistic), says
/// EHLO once more to learn whether the server pipelines, and authenticates when a login is
/// given, all within the connect timeout. EHLO says `hello`
/// when configured, else the host's FQDN or the connection's local address literal. A host the guard
/// refuses is a `Refused` failure at `Connect` (the mailbox's fault: it goes to `error`),
/// and nothing is connected.
pub(crate) async fn connect(
    settings: &SmtpSettings,
    hello: Option<&ClientId>,
    server: &Server,
    login: Option<&Login>,
) -> Result<Connection, Failure> {
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
    let (smtp, hello) = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => return Err(Failure::new(Stage::Connect, Cause::TimedOut(budget))),
        Ok(Err(failure)) => return Err(failure),
        Ok(Ok(connected)) => connected,
    };
    metrics::counter!("smtp_connections_opened_total").increment(1);
    let mut connection = Connection {
        smtp,
        pipelining: false,
        unusable: false,
    };

    if let Some(tls) = starttls {
        if !connection.smtp.can_starttls() {
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
            connection.smtp.starttls(tls, &hello),
        )
        .await;
        if let Err(failure) = starttls {
            return Err(close_after(connection, failure, settings).await);
        }
    }

    // lettre keeps only the EHLO keywords it knows, so the reply is asked for again (once per
    // connection, after STARTTLS: what was said in the clear does not count, RFC 3207).
    let ehlo = step(
        Stage::Connect,
        deadline,
        budget,
        connection.smtp.command(Ehlo::new(hello.clone())),
    )
    .await;
    match ehlo {
        Ok(reply) => connection.pipelining = announces_pipelining(&reply),
        // A refused EHLO leaves the session as it was (RFC 5321 4.1.4): lettre's went through,
        // so commands still work, one at a time.
        Err(Failure {
            cause: Cause::Reply { .. },
            ..
        }) => {}
        Err(failure) => return Err(close_after(connection, failure, settings).await),
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
            connection
                .smtp
                .auth(smtp::mechanisms(login.method), &credentials),
        )
        .await;
        if let Err(failure) = auth {
            return Err(close_after(connection, failure, settings).await);
        }
    }
    Ok(connection)
}

/// Sends one email: MAIL FROM, RCPT TO for each recipient and DATA (in one write when the
/// server pipelines), then the message, dot-stuffed, and the final dot. Returns the reply after
/// the final dot.
pub(crate) async fn deliver(
    connection: &mut Connection,
    settings: &SmtpSettings,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Response, Failure> {
    let mail = Mail::new(
        envelope.from().cloned(),
        mail_parameters(connection, envelope, message)?,
    );
    let budget = settings.command_timeout;
    if connection.pipelining {
        let mut group = mail.to_string();
        for recipient in envelope.to() {
            // Writing to a String cannot fail.
            let _ = write!(group, "{}", Rcpt::new(recipient.clone(), Vec::new()));
        }
        let _ = write!(group, "{Data}");
        pipelined_commands(connection, budget, group, envelope.to().len()).await?;
    } else {
        commands(connection, budget, mail, envelope).await?;
    }

    let budget = settings.data_timeout;
    let deadline = Instant::now() + budget;
    let reply = match std::str::from_utf8(message) {
        // lettre writes a command as text, so only a valid UTF-8 message can go as one.
        Ok(text) => {
            let sending = connection.smtp.command(dot_stuffed(text));
            step(Stage::AfterData, deadline, budget, sending).await?
        }
        Err(_) => {
            let sending = connection.smtp.message(message);
            step(Stage::AfterData, deadline, budget, sending).await?
        }
    };
    expect(Stage::AfterData, &reply, Severity::PositiveCompletion)?;
    Ok(reply)
}

/// SMTPUTF8 and 8BITMIME as the envelope and message need them, refused when the server
/// lacks them.
fn mail_parameters(
    connection: &Connection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Vec<MailParameter>, Failure> {
    let server = connection.smtp.server_info();
    let mut parameters = Vec::new();
    let addresses = envelope.from().into_iter().chain(envelope.to());
    if addresses.map(AsRef::<str>::as_ref).any(|a| !a.is_ascii()) {
        if !server.supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::new(
                Stage::MailFrom,
                Cause::Refused("non-ASCII addresses but the server lacks SMTPUTF8".into()),
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !server.supports_feature(Extension::EightBitMime) {
            return Err(Failure::new(
                Stage::MailFrom,
                Cause::Refused("a non-ASCII message but the server lacks 8BITMIME".into()),
            ));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(parameters)
}

/// MAIL FROM, each RCPT TO and DATA one at a time, each reply awaited before the next.
async fn commands(
    connection: &mut Connection,
    budget: Duration,
    mail: Mail,
    envelope: &Envelope,
) -> Result<(), Failure> {
    let completed = Severity::PositiveCompletion;
    let mailing = connection.smtp.command(mail);
    exchange(Stage::MailFrom, budget, completed, mailing).await?;
    for recipient in envelope.to() {
        let rcpt = connection
            .smtp
            .command(Rcpt::new(recipient.clone(), Vec::new()));
        exchange(Stage::RcptTo, budget, completed, rcpt).await?;
    }
    // Anything but 354 means the server is not reading a message: sending it would have its
    // lines taken as commands.
    let data = connection.smtp.command(Data);
    exchange(Stage::Data, budget, Severity::PositiveIntermediate, data).await
}

/// Runs `exchange` (a command, or the reading of a pipelined command's reply) within `budget`
/// and checks that the reply is of `severity`.
async fn exchange(
    stage: Stage,
    budget: Duration,
    severity: Severity,
    exchange: impl Future<Output = Result<Response, lettre::transport::smtp::Error>>,
) -> Result<(), Failure> {
    let reply = step(stage, Instant::now() + budget, budget, exchange).await?;
    expect(stage, &reply, severity)
}

/// `group`, MAIL FROM, RCPT TO for each of the `recipients` and DATA, in one write (RFC
/// 2920), then their replies in order, each checked as [`commands`] checks it, with a command
/// timeout of its own. The first failure is the send's; after it the remaining replies are
/// still read so that the connection can be closed cleanly, unless the server answered DATA
/// with 354 anyway: then it is reading a message that is not sent (not even an empty one) and
/// the connection is only closed.
async fn pipelined_commands(
    connection: &mut Connection,
    budget: Duration,
    group: String,
    recipients: usize,
) -> Result<(), Failure> {
    let completed = Severity::PositiveCompletion;
    let written = connection.smtp.command(group);
    let mut failed = exchange(Stage::MailFrom, budget, completed, written)
        .await
        .err();
    let stages = std::iter::repeat_n(Stage::RcptTo, recipients).chain([Stage::Data]);
    for stage in stages {
        if failed.as_ref().is_some_and(|f| !f.connection_alive()) {
            // The connection is closed without a word after such a failure: no more replies
            // are needed.
            break;
        }
        let severity = if stage == Stage::Data {
            Severity::PositiveIntermediate
        } else {
            completed
        };
        let reply = exchange(stage, budget, severity, connection.smtp.read_response()).await;
        match (&failed, reply) {
            (None, Ok(())) => {}
            (None, Err(failure)) => failed = Some(failure),
            (Some(_), Ok(())) if stage == Stage::Data => connection.unusable = true,
            (Some(_), Ok(())) => {}
            (Some(_), Err(later)) => {
                if !later.connection_alive() {
                    connection.unusable = true;
                    break;
                }
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `message` as lettre's `message()` puts it on the wire, in one string: a dot that starts a
/// line (at the very start or after CRLF) doubled, then CRLF, a dot and CRLF, even after a
/// final CRLF. lettre looks at every byte; this looks only where CRLF and a dot meet.
pub(super) fn dot_stuffed(message: &str) -> String {
    const END: &str = "\r\n.\r\n";
    let mut stuffed = String::with_capacity(message.len() + END.len() + 16);
    if message.starts_with('.') {
        stuffed.push('.');
    }
    let mut copied = 0;
    for found in memchr::memmem::find_iter(message.as_bytes(), b"\r\n.") {
        // Up to and including the dot, which is ASCII: a char boundary.
        let dot = found + 3;
        stuffed.push_str(&message[copied..dot]);
        stuffed.push('.');
        copied = dot;
    }
    stuffed.push_str(&message[copied..]);
    stuffed.push_str(END);
    stuffed
}

/// Whether an EHLO reply lists PIPELINING among its keywords (the lines after the first,
/// which names the server; keywords are case-insensitive).
pub(super) fn announces_pipelining(ehlo: &Response) -> bool {
    ehlo.message().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
    })
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
pub(crate) async fn quit(mut connection: Connection, settings: &SmtpSettings) {
    if !connection.has_broken() {
        let _ = tokio::time::timeout(settings.command_timeout, connection.smtp.quit()).await;
    }
    metrics::counter!("smtp_connections_closed_total").increment(1);
}

/// Ends a connection after `failure`: QUIT when the server is still talking to us, a plain
/// close otherwise.
pub(crate) async fn close_after(
    connection: Connection,
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
