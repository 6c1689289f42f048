//! The HTTP layer's own refusals in the error envelope. actix-http answers a request it cannot
//! parse by itself, before any of our code runs, with an empty 400 (a request target over
//! 65,534 bytes, the most `http::Uri` holds, or a malformed line) or an empty 431 (a head over
//! 128 KiB). [`EnvelopedStream`] wraps each connection and swaps that response, recognised by
//! its exact form (400 or 431, `content-length: 0`, `connection: close`, nothing after the
//! head; the API's own errors always carry a JSON body), for the envelope: 414 when the
//! request line was the part too long, else the same status with a message.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request target actix-http parses (`http::Uri`'s limit).
pub const MAX_PARSED_URI: usize = 65_534;
/// How long, and how much of the rest of a refused request, is read before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// What decides whether, and into what, a response is rewritten: pure, so tested apart.
struct Rewriter {
    /// Longest request target the API accepts (`api.max_uri_bytes`), for the message.
    max_uri_bytes: usize,
    /// Whether the bytes being read are still the first line of a request, and its length.
    in_first_line: bool,
    first_line: usize,
}

impl Rewriter {
    fn new(max_uri_bytes: usize) -> Self {
        Self {
            max_uri_bytes,
            in_first_line: true,
            first_line: 0,
        }
    }

    fn observe_read(&mut self, bytes: &[u8]) {
        if !self.in_first_line {
            return;
        }
        match bytes.iter().position(|b| *b == b'\n') {
            Some(end) => {
                self.first_line += end;
                self.in_first_line = false;
            }
            None => self.first_line += bytes.len(),
        }
    }

    /// A response went out: the next bytes read start a new request.
    fn observe_response(&mut self) {
        self.in_first_line = true;
        self.first_line = 0;
    }

    /// The envelope replacing `response`, when it is the HTTP layer's bare parse error.
    fn replacement(&self, response: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(response).ok()?;
        let head = text.strip_suffix("\r\n\r\n")?;
        if head.contains("\r\n\r\n") {
            return None;
        }
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
            .split(' ')
            .next()?;
        let headers: Vec<&str> = lines.collect();
        let has = |wanted: &str| headers.iter().any(|h| h.eq_ignore_ascii_case(wanted));
        let bare = has("content-length: 0") && has("connection: close");
        if !bare || !matches!(status, "400" | "431") {
            return None;
        }
        let (status, reason, code, message) = if self.first_line > MAX_PARSED_URI {
            (
                414,
                "URI Too Long",
                "uri_too_long",
                format!(
                    "the request target is longer than {} bytes",
                    self.max_uri_bytes
                ),
            )
        } else if status == "431" {
            (
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                "the request line and headers are larger than 128 KiB".to_owned(),
            )
        } else {
            (
                400,
                "Bad Request",
                "bad_request",
                "the request is not valid HTTP/1.1".to_owned(),
            )
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        let date = headers
            .iter()
            .find(|h| h.to_ascii_lowercase().starts_with("date: "))
            .map(|h| format!("{h}\r\n"))
            .unwrap_or_default();
        Some(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n{date}\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// A connection whose bare parse-error responses become envelopes. After one, it closes
/// gracefully when dropped (the HTTP layer just drops it): the response and a FIN go first and
/// what the client still sends is read and discarded for a moment, so the client reads the
/// response instead of a reset caused by its unread request.
pub struct EnvelopedStream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<S>,
    rewriter: Rewriter,
    /// A rewritten response not yet fully written.
    pending: Vec<u8>,
    sent: usize,
    /// After a rewritten response nothing else goes out: the HTTP layer closes the connection.
    replaced: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> EnvelopedStream<S> {
    pub fn new(inner: S, max_uri_bytes: usize) -> Self {
        Self {
            inner: Some(inner),
            rewriter: Rewriter::new(max_uri_bytes),
            pending: Vec::new(),
            sent: 0,
            replaced: false,
        }
    }

    fn inner(&mut self) -> io::Result<&mut S> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    /// Writes what is left of a rewritten response.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let Some(inner) = self.inner.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            let rest = &self.pending[self.sent..];
            match Pin::new(inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for EnvelopedStream<S> {
    fn drop(&mut self) {
        let (Some(mut inner), true) = (self.inner.take(), self.replaced) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let linger = async {
                if inner.shutdown().await.is_err() {
                    return;
                }
                let mut discard = [0u8; 8192];
                let mut left = LINGER_BYTES;
                while left > 0 {
                    match inner.read(&mut discard).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, linger).await;
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for EnvelopedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(this.inner()?).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.rewriter.observe_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for EnvelopedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replaced {
            // Whatever follows the rewritten response is dropped; it is written first.
            return this.drain(cx).map_ok(|()| buf.len());
        }
        if let Some(replacement) = this.rewriter.replacement(buf) {
            this.pending = replacement;
            this.replaced = true;
            return match this.drain(cx) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                // The rest goes out on flush or shutdown.
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(buf.len())),
            };
        }
        let written = Pin::new(this.inner()?).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = written {
            this.rewriter.observe_response();
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(this.inner()?).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(this.inner()?).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n";
    const BARE_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    fn stream_after_reading(request: &[u8]) -> Rewriter {
        let mut stream = Rewriter::new(8192);
        for chunk in request.chunks(1000) {
            stream.observe_read(chunk);
        }
        stream
    }

    fn status_and_body(response: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8_lossy(response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        let status = head.split(' ').nth(1).unwrap_or_default().to_owned();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    #[test]
    fn a_bare_400_after_an_overlong_request_line_becomes_a_414_envelope() {
        let request = format!(
            "GET /?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(100_000)
        );
        let stream = stream_after_reading(request.as_bytes());
        let replaced = stream.replacement(BARE_400).unwrap_or_default();
        let (status, body) = status_and_body(&replaced);
        assert_eq!(status, "414");
        assert_eq!(body["error"]["code"], "uri_too_long");
        assert!(String::from_utf8_lossy(&replaced).contains("date: Sun, 06 Dec 2026"));
    }

    #[test]
    fn other_bare_errors_keep_their_status_in_the_envelope() {
        let stream = stream_after_reading(b"GARBAGE\r\n\r\n");
        let (status, body) = status_and_body(&stream.replacement(BARE_400).unwrap_or_default());
        assert_eq!(
            (status.as_str(), &body["error"]["code"]),
            ("400", &"bad_request".into())
        );
        let (status, body) = status_and_body(&stream.replacement(BARE_431).unwrap_or_default());
        assert_eq!(status, "431");
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
    }

    #[test]
    fn responses_of_the_api_pass_unchanged() {
        let stream = stream_after_reading(b"GET / HTTP/1.1\r\n\r\n");
        let envelope = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\ncontent-type: application/json\r\n\r\n{\"error\": {\"x\": 1}}";
        assert!(stream.replacement(envelope).is_none());
        let empty_ok = b"HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(stream.replacement(empty_ok).is_none());
        let kept_alive = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(stream.replacement(kept_alive).is_none());
    }

    #[test]
    fn only_the_first_line_of_a_request_counts() {
        let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
        let stream = stream_after_reading(request.as_bytes());
        let (status, _) = status_and_body(&stream.replacement(BARE_431).unwrap_or_default());
        assert_eq!(status, "431");
    }
}
