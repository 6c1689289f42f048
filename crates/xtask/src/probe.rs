//! Network readiness checks and the poll-until-deadline loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::interrupt;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn connect(addr: &str) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().ok()?.collect();
    addrs.iter().find_map(|a| {
        let stream = TcpStream::connect_timeout(a, CONNECT_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
        Some(stream)
    })
}

/// True when something accepts TCP connections at `addr` ("host:port").
pub fn tcp_open(addr: &str) -> bool {
    connect(addr).is_some()
}

/// True when an SMTP server at `addr` greets with a 220 banner (a bare open port is not
/// enough: GreenMail binds before it is ready to talk).
pub fn smtp_ready(addr: &str) -> bool {
    let Some(stream) = connect(addr) else {
        return false;
    };
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}

/// Status code of `GET path` over HTTP/1.0, which needs no client library: the server
/// closes the connection after the response.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = connect(addr)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    parse_status_line(&String::from_utf8_lossy(&head[..n]))
}

/// One HTTP/1.0 request with an optional bearer token and JSON body; returns the status and
/// the parsed JSON body (Null when it is not JSON).
pub fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
    let mut stream = connect(addr)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = parse_status_line(&text)?;
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null);
    Some((status, body))
}

fn parse_status_line(response: &str) -> Option<u16> {
    let mut parts = response.lines().next()?.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Polls `check` until it returns true, fails, Ctrl-C is pressed or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if interrupt::requested() {
            bail!("interrupted while waiting for {what}");
        }
        if Instant::now() >= deadline {
            bail!("{what} not ready after {} s", timeout.as_secs());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_status_line;

    #[test]
    fn parses_status_line() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\nx: y\r\n"), Some(200));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(""), None);
    }
}
