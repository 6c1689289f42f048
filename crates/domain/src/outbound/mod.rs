//! The guard of every outbound connection made on a tenant's behalf (a mailbox's SMTP and
//! IMAP servers, OAuth token endpoints; webhooks later): tenants choose the host, so
//! without it an API key could make the platform connect to cloud metadata
//! (169.254.169.254), loopback services or the private network, and map them through the
//! errors it reports.
//!
//! [`OutboundGuard::connect`] resolves the host once, refuses the connection when any
//! resolved address is not public ([`refused_reason`]) and not in
//! `security.allowed_private_networks`, then connects to the addresses it checked, never
//! resolving again, so a DNS answer that changes between check and use (rebinding) changes
//! nothing.
//!
//! **Invariants:** nothing connects to a tenant's host except through this guard, and
//! nothing resolves a tenant's host a second time; a refusal tells the tenant only
//! [`REFUSED`] (which internal address or range was hit is logged for the operator, never
//! returned), and counts in `outbound_connections_refused_total{purpose}`.

mod ranges;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;

pub use ranges::{parse_literal, refused_reason};

/// What a tenant is told when its host resolves to an address the platform must not reach.
pub const REFUSED: &str = "refused: resolves to a private address";

/// What a connection is for: the `purpose` label of the refusal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A mailbox's SMTP server (API verify, sender worker).
    Smtp,
    /// A mailbox's IMAP server (API verify, inbox watcher).
    Imap,
    /// An OAuth provider's token or revocation endpoint (`domain::oauth`).
    OAuth,
    /// A workspace's webhook endpoint (the webhooks service).
    Webhook,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Smtp => "smtp",
            Purpose::Imap => "imap",
            Purpose::OAuth => "oauth",
            Purpose::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`OutboundGuard::connect`] gave no connection. The texts can be shown to the tenant:
/// they name no address beyond the host it gave.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host is, or resolves to, an address that is not public and not allowed.
    #[error("{REFUSED}")]
    Refused,
    #[error("could not resolve the host: {0}")]
    Resolve(io::Error),
    #[error("the host has no address")]
    NoAddress,
    #[error("could not connect: {0}")]
    Connect(io::Error),
    #[error("could not connect within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

impl ConnectError {
    pub fn is_refused(&self) -> bool {
        matches!(self, ConnectError::Refused)
    }
}

/// A host given as an IP address the guard refuses: what the API answers a tenant who typed
/// one (the tenant wrote the address, so naming its range tells nothing new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedLiteral {
    pub ip: IpAddr,
    pub reason: &'static str,
}

impl fmt::Display for RefusedLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a public address ({}); the platform does not connect to private \
             networks",
            self.ip, self.reason
        )
    }
}

/// Refuses connections to non-public addresses, except those in the operator's allowlist
/// (`security.allowed_private_networks`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct OutboundGuard {
    allowed: Arc<[IpNet]>,
}

impl OutboundGuard {
    /// A guard that also lets these networks through (the empty list allows public addresses
    /// only, as [`Default`] does).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Why a connection to `ip` is refused, or `None` when it may be made: a public address,
    /// or one in an allowed network. An IPv4-mapped IPv6 address is the IPv4 address (the
    /// kernel connects to it), so an allowed IPv4 network covers its mapped form.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = refused_reason(ip)?;
        (!self.is_allowed_network(ip)).then_some(reason)
    }

    /// Whether `ip` is in one of the operator's allowed networks (its IPv4-mapped form
    /// counts as the IPv4 address). The API accepts `http://` webhook URLs only to these:
    /// plain HTTP is for the operator's own private network, never the internet.
    pub fn is_allowed_network(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// `Err` when `host` is an IP address (in any spelling the resolver accepts) that
    /// [`Self::refusal`] refuses; names pass, they are judged when resolved.
    pub fn check_literal(&self, host: &str) -> Result<(), RefusedLiteral> {
        match parse_literal(host) {
            Some(ip) => match self.refusal(ip) {
                Some(reason) => Err(RefusedLiteral { ip, reason }),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Resolves `host` once (an IP literal is taken as it is) and returns its addresses,
    /// unless any of them is refused: then [`ConnectError::Refused`], logged with the
    /// address and counted. An answer mixing public and private addresses is refused as a
    /// whole, so which address a connection ends up on never depends on the order tried.
    pub async fn resolve(
        &self,
        purpose: Purpose,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        let addresses: Vec<SocketAddr> = match parse_literal(host) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => {
                let mut found = Vec::new();
                for address in tokio::net::lookup_host((host.trim(), port))
                    .await
                    .map_err(ConnectError::Resolve)?
                {
                    if !found.contains(&address) {
                        found.push(address);
                    }
                }
                found
            }
        };
        if addresses.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        for address in &addresses {
            if let Some(reason) = self.refusal(address.ip()) {
                metrics::counter!(
                    "outbound_connections_refused_total",
                    "purpose" => purpose.as_str(),
                )
                .increment(1);
                // For the operator: the tenant is told only REFUSED.
                tracing::warn!(
                    %purpose, host, port, address = %address.ip(), range = reason,
                    "outbound connection refused: the host resolves to a non-public address \
                     (security.allowed_private_networks can allow it)"
                );
                return Err(ConnectError::Refused);
            }
        }
        Ok(addresses)
    }

    /// Resolves and checks `host` ([`Self::resolve`]), then connects to the checked
    /// addresses in order until one accepts, all within `timeout`.
    pub async fn connect(
        &self,
        purpose: Purpose,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpStream, ConnectError> {
        let connecting = async {
            let addresses = self.resolve(purpose, host, port).await?;
            let mut last_error = None;
            for address in addresses {
                match TcpStream::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => last_error = Some(error),
                }
            }
            Err(last_error.map_or(ConnectError::NoAddress, ConnectError::Connect))
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .unwrap_or(Err(ConnectError::TimedOut(timeout)))
    }
}

#[cfg(test)]
mod tests;
