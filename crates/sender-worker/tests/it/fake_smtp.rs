//! A scripted SMTP server for tests: replies as a script says, records what it received, how
//! many connections it accepted and how many were open at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use domain::mail::{Security, Server};
use sender_worker::smtp::MailboxServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// What the server does at an event instead of its default reply.
#[derive(Debug, Clone)]
pub enum Act {
    /// Replies with these lines (CRLF added).
    Reply(String),
    /// Replies, then closes the connection.
    ReplyAndClose(String),
    /// Closes the connection without a reply.
    Close,
    /// Never replies again; reads until the client goes away.
    Stall,
}

/// `(connection number from 0, event, the line received)`: `None` for the default reply.
/// Events: `GREETING`, `EHLO`, `AUTH`, `MAIL`, `RCPT`, `DATA`, `DOT` (the message's end),
/// `QUIT`, and any other command's verb.
type Script = dyn Fn(usize, &str, &str) -> Option<Act> + Send + Sync;

/// The EHLO reply of a server that pipelines (RFC 2920), for scripts.
pub const EHLO_PIPELINING: &str =
    "250-fake.test\n250-PIPELINING\n250-AUTH PLAIN LOGIN\n250-8BITMIME\n250 SMTPUTF8";

struct Command {
    connection: usize,
    line: String,
    /// It had arrived already when the previous command was read: both came in one write.
    with_previous: bool,
}

#[derive(Default)]
struct State {
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    commands: Mutex<Vec<Command>>,
    messages: Mutex<Vec<String>>,
    /// What was read after a 354 of messages whose final dot never came.
    unfinished: Mutex<Vec<String>>,
}

pub struct FakeSmtp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Act {
    pub fn reply(text: &str) -> Self {
        Act::Reply(text.to_owned())
    }
}

impl FakeSmtp {
    /// A server that accepts everything.
    pub async fn accepting() -> anyhow::Result<Self> {
        Self::start(|_, _, _| None).await
    }

    pub async fn start(
        script: impl Fn(usize, &str, &str) -> Option<Act> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let script: Arc<Script> = Arc::new(script);
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = accepting.accepted.fetch_add(1, Ordering::SeqCst);
                let open = accepting.open.fetch_add(1, Ordering::SeqCst) + 1;
                accepting.max_open.fetch_max(open, Ordering::SeqCst);
                let state = accepting.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let counted = serve(stream, number, &state, &*script).await;
                    if !counted {
                        state.open.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A mailbox of this server: plaintext, no login.
    pub fn mailbox(&self) -> MailboxServer {
        MailboxServer {
            mailbox_id: Uuid::new_v4(),
            server: Server {
                host: self.addr.ip().to_string(),
                port: self.addr.port(),
                security: Security::None,
            },
            login: None,
        }
    }

    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    pub fn max_open(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// The messages received in full (dot-unstuffed, without the final dot).
    pub fn messages(&self) -> Vec<String> {
        self.state
            .messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What was received after a 354 on connections that ended before the final dot.
    pub fn unfinished_messages(&self) -> Vec<String> {
        self.state
            .unfinished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `(connection number, command line)` of every command received.
    pub fn commands(&self) -> Vec<(usize, String)> {
        self.state
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| (c.connection, c.line.clone()))
            .collect()
    }

    /// The commands of connection `connection` in the groups they arrived in: commands that
    /// were read from the same write of the client are in one group.
    pub fn command_groups(&self, connection: usize) -> Vec<Vec<String>> {
        let commands = self
            .state
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut groups: Vec<Vec<String>> = Vec::new();
        for command in commands.iter().filter(|c| c.connection == connection) {
            match groups.last_mut() {
                Some(group) if command.with_previous => group.push(command.line.clone()),
                _ => groups.push(vec![command.line.clone()]),
            }
        }
        groups
    }
}

/// Serves one connection; returns whether it already took itself off the open count (QUIT).
async fn serve(stream: TcpStream, number: usize, state: &State, script: &Script) -> bool {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let act = |event: &str, line: &str, default: &'static str| {
        script(number, event, line).unwrap_or_else(|| Act::reply(default))
    };
    let mut step = act("GREETING", "", "220 fake.test ESMTP");
    let mut event = String::from("GREETING");
    // Whether more input was waiting when the last command was read.
    let mut more_waiting = false;
    loop {
        // Carry out the action decided for the previous event.
        let (text, close) = match step {
            Act::Reply(text) => (text, false),
            Act::ReplyAndClose(text) => (text, true),
            Act::Close => return false,
            Act::Stall => {
                let mut sink = Vec::new();
                while matches!(read.read_until(b'\n', &mut sink).await, Ok(n) if n > 0) {
                    sink.clear();
                }
                return false;
            }
        };
        let quitting = event == "QUIT";
        if quitting {
            // Off the count before the client can see the reply and open another.
            state.open.fetch_sub(1, Ordering::SeqCst);
        }
        let reply = format!("{}\r\n", text.replace('\n', "\r\n"));
        if write.write_all(reply.as_bytes()).await.is_err() || close || quitting {
            return quitting;
        }
        if event == "DATA" && text.starts_with("354") {
            let message = match read_message(&mut read).await {
                Ok(message) => message,
                Err(unfinished) => {
                    state
                        .unfinished
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(unfinished);
                    return false;
                }
            };
            state
                .messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
            // Groups are of commands; the message ends the one DATA was in.
            more_waiting = false;
            event = "DOT".into();
            step = act("DOT", "", "250 2.0.0 queued");
            continue;
        }

        let mut line = String::new();
        match read.read_line(&mut line).await {
            Ok(n) if n > 0 => {}
            _ => return false,
        }
        let line = line.trim_end().to_owned();
        state
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Command {
                connection: number,
                line: line.clone(),
                with_previous: more_waiting,
            });
        more_waiting = !read.buffer().is_empty();
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        event = match verb.as_str() {
            "HELO" => "EHLO".to_owned(),
            _ => verb,
        };
        let default = match event.as_str() {
            "EHLO" => "250-fake.test\n250-AUTH PLAIN LOGIN\n250-8BITMIME\n250 SMTPUTF8",
            "AUTH" => "235 2.7.0 authenticated",
            "DATA" => "354 end with <CRLF>.<CRLF>",
            "QUIT" => "221 2.0.0 bye",
            _ => "250 2.1.0 ok",
        };
        step = act(&event, &line, default);
    }
}

/// Reads the message up to the final dot, undoing dot-stuffing; what was read when the
/// connection ends before the dot.
async fn read_message(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<String, String> {
    let mut message = String::new();
    loop {
        let mut line = String::new();
        match read.read_line(&mut line).await {
            Ok(n) if n > 0 => {}
            _ => return Err(message + &line),
        }
        if line == ".\r\n" {
            return Ok(message);
        }
        match line.strip_prefix('.') {
            Some(rest) => message.push_str(rest),
            None => message.push_str(&line),
        }
    }
}
