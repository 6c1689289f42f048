//! The client's address: from the socket peer, or from `X-Forwarded-For` when the peer is a
//! trusted proxy; and what of it events keep (`tracker.client_ip`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use domain::config::ClientIpPolicy;
use hmac::{Hmac, Mac as _};
use ipnet::IpNet;
use sha2::Sha256;

/// The address of whoever made the request. Behind trusted proxies, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left are
/// whatever the client chose to send).
pub fn resolve(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let chain = header
        .split(',')
        .map(|entry| entry.trim().parse::<IpAddr>().ok());
    let mut leftmost = None;
    for entry in chain.rev() {
        // An unparseable hop: stop at the last address we could believe.
        let Some(ip) = entry else { break };
        if !is_trusted(&ip) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    Some(leftmost.unwrap_or(peer))
}

/// What an event keeps of `ip`.
#[derive(Clone)]
pub struct IpRecorder {
    policy: ClientIpPolicy,
    /// The first tracking key, for `hash`.
    hash_key: Vec<u8>,
}

impl std::fmt::Debug for IpRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpRecorder")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl IpRecorder {
    pub fn new(policy: ClientIpPolicy, hash_key: Vec<u8>) -> Self {
        Self { policy, hash_key }
    }

    pub fn record(&self, ip: Option<IpAddr>) -> Option<String> {
        let ip = ip?;
        match self.policy {
            ClientIpPolicy::None => None,
            ClientIpPolicy::Full => Some(ip.to_string()),
            ClientIpPolicy::Truncate => Some(truncate(ip).to_string()),
            ClientIpPolicy::Hash => {
                let mut mac = Hmac::<Sha256>::new_from_slice(&self.hash_key).ok()?;
                mac.update(ip.to_string().as_bytes());
                let digest = mac.finalize().into_bytes();
                Some(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
            }
        }
    }
}

/// IPv4 to its /24, IPv6 to its /48.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 80) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> anyhow::Result<IpAddr> {
        Ok(s.parse()?)
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() -> anyhow::Result<()> {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse()?];
        let xff = Some("203.0.113.9, 10.1.1.1");
        // (case, peer, header, expected)
        let table = [
            ("untrusted peer", "198.51.100.1", xff, "198.51.100.1"),
            ("trusted peer", "10.0.0.2", xff, "203.0.113.9"),
            ("no header", "10.0.0.2", None, "10.0.0.2"),
            (
                "spoofed left entry",
                "10.0.0.2",
                Some("1.1.1.1, 203.0.113.9"),
                "203.0.113.9",
            ),
            ("all trusted", "10.0.0.2", Some("10.9.9.9"), "10.9.9.9"),
            ("garbage", "10.0.0.2", Some("nonsense"), "10.0.0.2"),
        ];
        for (case, peer, header, expected) in table {
            assert_eq!(
                resolve(Some(ip(peer)?), header, &trusted),
                Some(ip(expected)?),
                "{case}"
            );
        }
        Ok(())
    }

    #[test]
    fn policies() -> anyhow::Result<()> {
        let v4 = Some(ip("203.0.113.77")?);
        let v6 = Some(ip("2001:db8:abcd:1234::1")?);
        let key = vec![7u8; 32];
        let truncated = IpRecorder::new(ClientIpPolicy::Truncate, key.clone());
        assert_eq!(truncated.record(v4).as_deref(), Some("203.0.113.0"));
        assert_eq!(truncated.record(v6).as_deref(), Some("2001:db8:abcd::"));
        let full = IpRecorder::new(ClientIpPolicy::Full, key.clone());
        assert_eq!(full.record(v4).as_deref(), Some("203.0.113.77"));
        assert_eq!(
            IpRecorder::new(ClientIpPolicy::None, key.clone()).record(v4),
            None
        );
        let hashed = IpRecorder::new(ClientIpPolicy::Hash, key).record(v4);
        assert_eq!(hashed.as_ref().map(String::len), Some(32));
        assert!(hashed.is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit())));
        Ok(())
    }
}
