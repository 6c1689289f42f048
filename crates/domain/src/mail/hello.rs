//! The name the platform greets SMTP servers with (`EHLO <name>`), which receiving servers
//! write into the recipient's `Received:` header and spam filters judge.
//!
//! RFC 5321 (4.1.4, 2.3.5) asks for the client's fully qualified domain name, or an address
//! literal when it has none. A machine's bare host name (`vm`, or a Kubernetes pod name) is
//! neither, and filters hold it against the email. So the name is, in order:
//! 1. `sender_worker.hello_name` when configured (a FQDN or an address literal);
//! 2. the host's FQDN: its host name when that has a dot, else the canonical name the
//!    resolver gives for it (`getaddrinfo` with `AI_CANONNAME`, i.e. `/etc/hosts` then DNS);
//! 3. else the address literal of the connection's local socket (`[10.1.2.3]`,
//!    `[IPv6:2001:db8::1]`), as Thunderbird does.
//!
//! **Invariant:** the chosen name is never a dotless name.

use std::net::{IpAddr, Ipv6Addr};

use lettre::transport::smtp::extension::ClientId;
use tokio::sync::OnceCell;

/// What a configured name must look like, for error messages.
pub const EXPECTED: &str = "must be a fully qualified domain name (e.g. mail.example.com) or an \
                            address literal ([192.0.2.1] or [IPv6:2001:db8::1])";

/// Parses a configured EHLO name: a fully qualified domain name (at least two labels of
/// letters, digits and inner hyphens, at most 253 characters) or an address literal. A bare
/// IP address is taken as its literal (in an environment variable, figment reads `[...]` as
/// a list unless quoted).
pub fn parse(name: &str) -> Result<ClientId, String> {
    let name = name.trim();
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(literal(ip));
    }
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        if let Some(v6) = literal
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .and_then(|_| literal.get(5..))
        {
            return v6
                .parse::<Ipv6Addr>()
                .map(ClientId::Ipv6)
                .map_err(|_| EXPECTED.to_owned());
        }
        return literal
            .parse()
            .map(ClientId::Ipv4)
            .map_err(|_| EXPECTED.to_owned());
    }
    if is_fqdn(name) {
        Ok(ClientId::Domain(name.to_ascii_lowercase()))
    } else {
        Err(EXPECTED.to_owned())
    }
}

/// Whether `name` is a syntactically valid domain name of at least two labels that names a
/// real host (not `localhost`, `localhost.localdomain` or the like).
pub fn is_fqdn(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    let valid_label = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let is_local = labels.first() == Some(&"localhost")
        || labels.last() == Some(&"localdomain")
        || labels.last() == Some(&"localhost");
    lower.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(valid_label)
        // A top-level label is never all digits; an IPv4 address is not a domain name.
        && !labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        && !is_local
}

/// The EHLO name of one connection: the configured one, else the host's FQDN, else the
/// address literal of the connection's local address (an IPv4-mapped IPv6 address is given
/// as the IPv4 address it carries).
pub fn choose(configured: Option<&ClientId>, host_fqdn: Option<&str>, local: IpAddr) -> ClientId {
    if let Some(configured) = configured {
        return configured.clone();
    }
    if let Some(fqdn) = host_fqdn.filter(|name| is_fqdn(name)) {
        return ClientId::Domain(fqdn.to_ascii_lowercase());
    }
    literal(local)
}

fn literal(ip: IpAddr) -> ClientId {
    match ip {
        IpAddr::V4(v4) => ClientId::Ipv4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ClientId::Ipv4(v4),
            None => ClientId::Ipv6(v6),
        },
    }
}

/// The host's FQDN, looked up once per process (off the async threads: the resolver may ask
/// DNS), or `None` when the host has none.
pub async fn host_fqdn() -> Option<String> {
    static FQDN: OnceCell<Option<String>> = OnceCell::const_new();
    FQDN.get_or_init(|| async {
        let found = tokio::task::spawn_blocking(lookup_host_fqdn)
            .await
            .ok()
            .flatten();
        match &found {
            Some(name) => tracing::info!(ehlo = %name, "SMTP greets with the host's FQDN"),
            None => tracing::info!(
                "the host has no FQDN; SMTP greets with the address literal of each \
                 connection (set sender_worker.hello_name to choose a name)"
            ),
        }
        found
    })
    .await
    .clone()
}

/// The host name when it is a FQDN, else the canonical name the resolver gives for it when
/// that one is. Blocking.
fn lookup_host_fqdn() -> Option<String> {
    let host = dns_lookup::get_hostname().ok()?;
    if is_fqdn(&host) {
        return Some(host);
    }
    let hints = dns_lookup::AddrInfoHints {
        flags: libc::AI_CANONNAME,
        ..dns_lookup::AddrInfoHints::default()
    };
    dns_lookup::getaddrinfo(Some(&host), None, Some(hints))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|info| info.canonname)
        .find(|name| is_fqdn(name))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn shown(id: &ClientId) -> String {
        id.to_string()
    }

    #[test]
    fn configured_names_are_fqdns_or_address_literals() {
        for (name, ehlo) in [
            ("mail.example.com", "mail.example.com"),
            ("  Mail.Example.COM ", "mail.example.com"),
            ("a-1.b2.example", "a-1.b2.example"),
            ("[192.0.2.1]", "[192.0.2.1]"),
            ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
            ("[ipv6:2001:DB8::1]", "[IPv6:2001:db8::1]"),
            ("192.0.2.1", "[192.0.2.1]"),
            ("2001:db8::1", "[IPv6:2001:db8::1]"),
        ] {
            let parsed = parse(name).map_err(|e| format!("{name}: {e}"));
            assert_eq!(parsed.as_ref().map(shown), Ok(ehlo.to_owned()), "{name}");
        }
        for bad in [
            "",
            "vm",
            "localhost",
            "localhost.localdomain",
            "vm.localdomain",
            "-bad.example.com",
            "bad-.example.com",
            "a..example.com",
            "under_score.example.com",
            "space here.example.com",
            ".example.com",
            "example.com.",
            "192.0.2",
            "[192.0.2]",
            "[2001:db8::1]",
            "[IPv6:192.0.2.1]",
            "[mail.example.com]",
            &format!("{}.example.com", "a".repeat(64)),
            &format!("{}.com", "a.".repeat(126)),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_configured_name_wins() {
        let configured = ClientId::Domain("mail.example.com".into());
        let chosen = choose(
            Some(&configured),
            Some("host.example.net"),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        );
        assert_eq!(shown(&chosen), "mail.example.com");
    }

    #[test]
    fn unset_uses_the_host_fqdn() {
        let chosen = choose(
            None,
            Some("Host.Example.NET"),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        );
        assert_eq!(shown(&chosen), "host.example.net");
    }

    #[test]
    fn without_a_fqdn_the_local_address_literal_is_used_never_a_short_name() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        for host in [
            None,
            Some("vm"),
            Some("localhost"),
            Some("localhost.localdomain"),
        ] {
            assert_eq!(shown(&choose(None, host, v4)), "[10.1.2.3]", "{host:?}");
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
        assert_eq!(
            shown(&choose(None, Some("pod-7f9c"), v6)),
            "[IPv6:2001:db8::7]"
        );
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert_eq!(shown(&choose(None, None, mapped)), "[10.1.2.3]");
    }
}
