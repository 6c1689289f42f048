use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn loopback_allowed() -> OutboundGuard {
    OutboundGuard::new(vec![
        "127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}")),
        "::1/128".parse().unwrap_or_else(|e| panic!("{e}")),
    ])
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn without_an_allowlist_only_public_addresses_pass() {
    let guard = OutboundGuard::default();
    assert_eq!(guard.refusal(ip("8.8.8.8")), None);
    assert_eq!(guard.refusal(ip("2606:4700::1111")), None);
    for refused in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "fd00::1",
    ] {
        assert!(guard.refusal(ip(refused)).is_some(), "{refused}");
    }
}

#[test]
fn the_allowlist_lets_its_networks_through_and_nothing_else() {
    let guard = OutboundGuard::new(vec![
        "10.1.0.0/16".parse().unwrap_or_else(|e| panic!("{e}")),
        "fd00:1::/32".parse().unwrap_or_else(|e| panic!("{e}")),
    ]);
    assert_eq!(guard.refusal(ip("10.1.2.3")), None);
    assert_eq!(guard.refusal(ip("fd00:1::25")), None);
    assert_eq!(
        guard.refusal(ip("::ffff:10.1.2.3")),
        None,
        "the mapped form of an allowed IPv4 address is the same address"
    );
    assert!(guard.refusal(ip("10.2.0.1")).is_some());
    assert!(guard.refusal(ip("fd00:2::1")).is_some());
    assert!(guard.refusal(ip("127.0.0.1")).is_some());
    assert!(guard.refusal(ip("169.254.169.254")).is_some());
    assert_eq!(guard.refusal(ip("8.8.8.8")), None, "public still passes");
}

#[test]
fn loopback_allowed_covers_both_families() {
    let guard = loopback_allowed();
    assert_eq!(guard.refusal(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    assert_eq!(guard.refusal(IpAddr::V6(Ipv6Addr::LOCALHOST)), None);
    assert_eq!(guard.refusal(ip("::ffff:127.0.0.1")), None);
    assert!(guard.refusal(ip("10.0.0.1")).is_some());
}

#[test]
fn only_addresses_of_allowed_networks_are_in_them() {
    let guard = loopback_allowed();
    for inside in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(guard.is_allowed_network(ip(inside)), "{inside}");
    }
    // A public address is reachable, but in no allowed network.
    for outside in ["8.8.8.8", "10.0.0.1", "::2"] {
        assert!(!guard.is_allowed_network(ip(outside)), "{outside}");
    }
    assert!(!OutboundGuard::default().is_allowed_network(ip("127.0.0.1")));
}

#[test]
fn literals_are_checked_and_names_left_to_resolution() {
    let guard = OutboundGuard::default();
    for literal in [
        "169.254.169.254",
        "10.0.0.1",
        "0.0.0.0",
        "[::1]",
        "::1",
        "::ffff:127.0.0.1",
        "fd00::1",
        "127.1",
        "0x7f000001",
    ] {
        let refused = guard
            .check_literal(literal)
            .err()
            .unwrap_or_else(|| panic!("{literal} passed"));
        let message = refused.to_string();
        assert!(message.contains("not a public address"), "{message}");
    }
    assert_eq!(
        guard
            .check_literal("169.254.169.254")
            .err()
            .map(|r| r.reason),
        Some("link-local")
    );
    for allowed in [
        "8.8.8.8",
        "[2606:4700::1111]",
        "smtp.example.com",
        "localhost",
    ] {
        assert_eq!(guard.check_literal(allowed), Ok(()), "{allowed}");
    }
    assert_eq!(loopback_allowed().check_literal("127.0.0.1"), Ok(()));
    assert_eq!(loopback_allowed().check_literal("[::1]"), Ok(()));
}

#[test]
fn refusals_tell_the_tenant_nothing_about_the_address() {
    assert_eq!(
        ConnectError::Refused.to_string(),
        "refused: resolves to a private address"
    );
    assert!(ConnectError::Refused.is_refused());
    assert!(!ConnectError::NoAddress.is_refused());
}

/// A listener on 127.0.0.1 that never accepts by itself: [`pending`] tells whether a
/// connection reached it (on loopback a connect that returned has completed its handshake,
/// so it waits in the accept queue).
fn idle_listener() -> anyhow::Result<(std::net::TcpListener, u16)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

fn pending(listener: &std::net::TcpListener) -> bool {
    listener.accept().is_ok()
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_before_any_connection() -> anyhow::Result<()> {
    let (listener, port) = idle_listener()?;
    for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]", "127.1"] {
        let result = OutboundGuard::default()
            .connect(Purpose::Smtp, host, port, TIMEOUT)
            .await;
        assert!(
            matches!(result, Err(ConnectError::Refused)),
            "{host}: {result:?}"
        );
        assert!(!pending(&listener), "{host}: a connection was made");
    }
    Ok(())
}

#[tokio::test]
async fn an_allowed_network_is_connected_to() -> anyhow::Result<()> {
    let (listener, port) = idle_listener()?;
    let stream = loopback_allowed()
        .connect(Purpose::Imap, "localhost", port, TIMEOUT)
        .await?;
    assert!(stream.peer_addr()?.ip().is_loopback());
    assert!(pending(&listener));
    let stream = loopback_allowed()
        .connect(Purpose::Imap, "127.0.0.1", port, TIMEOUT)
        .await?;
    assert_eq!(stream.peer_addr()?.port(), port);
    assert!(pending(&listener));
    Ok(())
}

#[tokio::test]
async fn connection_failures_are_told_apart_from_refusals() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let result = loopback_allowed()
        .connect(Purpose::Smtp, "127.0.0.1", closed, TIMEOUT)
        .await;
    assert!(
        matches!(result, Err(ConnectError::Connect(_))),
        "{result:?}"
    );
    let result = OutboundGuard::default()
        .connect(Purpose::Smtp, "no-such-host.invalid", 25, TIMEOUT)
        .await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Resolve(_) | ConnectError::TimedOut(_))
        ),
        "{result:?}"
    );
    Ok(())
}
