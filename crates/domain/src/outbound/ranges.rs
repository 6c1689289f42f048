//! Which addresses a connection made on a tenant's behalf must not reach: everything that is
//! not public unicast (IANA's special-purpose registries), and the IPv6 forms that carry an
//! IPv4 address (IPv4-mapped, NAT64, 6to4) when the carried address is one of those.
//!
//! Pure functions, tested range by range (an address inside and one just outside each).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const PRIVATE: &str = "private (RFC 1918)";
const LOOPBACK: &str = "loopback";
const LINK_LOCAL: &str = "link-local";
const MULTICAST: &str = "multicast";
const DOCUMENTATION: &str = "documentation";
const UNSPECIFIED: &str = "unspecified";

/// IPv4 ranges refused, first match wins (255.255.255.255 sits inside 240.0.0.0/4).
const V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "\"this network\" or unspecified (0.0.0.0/8)",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, PRIVATE),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space (100.64.0.0/10)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, LOOPBACK),
    (Ipv4Addr::new(169, 254, 0, 0), 16, LINK_LOCAL),
    (Ipv4Addr::new(172, 16, 0, 0), 12, PRIVATE),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (Ipv4Addr::new(192, 0, 2, 0), 24, DOCUMENTATION),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, PRIVATE),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking (198.18.0.0/15)",
    ),
    (Ipv4Addr::new(198, 51, 100, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(203, 0, 113, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(224, 0, 0, 0), 4, MULTICAST),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
];

/// How an IPv6 range is judged.
#[derive(Clone, Copy)]
enum V6Rule {
    /// Refused, for this reason.
    Refused(&'static str),
    /// Judged by the IPv4 address it carries: IPv4-mapped and the well-known NAT64 prefix
    /// (the last 32 bits).
    EmbeddedLast32,
    /// 6to4 (RFC 3056): the IPv4 address is bits 16 to 47.
    SixToFour,
}

/// IPv6 ranges, first match wins (::/128 and ::1/128 sit inside ::/96).
const V6: &[(Ipv6Addr, u8, V6Rule)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, V6Rule::Refused(UNSPECIFIED)),
    (Ipv6Addr::LOCALHOST, 128, V6Rule::Refused(LOOPBACK)),
    (v6(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, V6Rule::EmbeddedLast32),
    (
        v6(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        V6Rule::Refused("IPv4-compatible (::/96, deprecated)"),
    ),
    (
        v6(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        V6Rule::Refused("IPv4-translated (::ffff:0:0:0/96)"),
    ),
    (
        v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        V6Rule::EmbeddedLast32,
    ),
    // Local-use NAT64 (RFC 8215): each site picks its own RFC 6052 layout (/48 to /96), so
    // the IPv4 address it carries cannot be read reliably: any reading we chose could be
    // translated by the site's NAT64 as another address. Refused as a whole (not globally
    // reachable, per IANA); an operator with such a NAT64 can allow its prefix.
    (
        v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        V6Rule::Refused("local-use NAT64 (64:ff9b:1::/48)"),
    ),
    (
        v6(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        V6Rule::Refused("discard-only (100::/64)"),
    ),
    (
        v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        V6Rule::Refused(DOCUMENTATION),
    ),
    (
        v6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        V6Rule::Refused("IETF protocol assignments (2001::/23)"),
    ),
    (v6(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, V6Rule::SixToFour),
    (
        v6(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        V6Rule::Refused(DOCUMENTATION),
    ),
    (
        v6(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        V6Rule::Refused("unique local (fc00::/7)"),
    ),
    (
        v6(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refused(LINK_LOCAL),
    ),
    (
        v6(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refused("site-local (fec0::/10, deprecated)"),
    ),
    (
        v6(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        V6Rule::Refused(MULTICAST),
    ),
];

/// Everything public in IPv6 lies in 2000::/3; outside it, only the ranges above carry
/// meaning (the rest is reserved or unassigned).
const GLOBAL_UNICAST: (Ipv6Addr, u8) = (v6(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
const NOT_GLOBAL: &str = "reserved (outside 2000::/3)";

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

/// Why a connection to `ip` is refused, or `None` when `ip` is a public unicast address.
pub fn refused_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => v6_reason(ip),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    V4.iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, reason)| *reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let Some((_, _, rule)) = V6.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) else {
        return (!in_v6(ip, GLOBAL_UNICAST.0, GLOBAL_UNICAST.1)).then_some(NOT_GLOBAL);
    };
    let bits = u128::from(ip);
    match *rule {
        V6Rule::Refused(reason) => Some(reason),
        V6Rule::EmbeddedLast32 => v4_reason(v4_at(bits, 96)),
        V6Rule::SixToFour => v4_reason(v4_at(bits, 16)),
    }
}

/// The 32 bits starting at bit `from` (0 is the most significant).
fn v4_at(bits: u128, from: u32) -> Ipv4Addr {
    // Truncation keeps exactly the 32 bits shifted to the bottom.
    #[allow(clippy::cast_possible_truncation)]
    Ipv4Addr::from((bits >> (96 - from)) as u32)
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let shift = 32 - u32::from(len);
    len == 0 || (u32::from(ip) ^ u32::from(net)).checked_shr(shift) == Some(0)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let shift = 128 - u32::from(len);
    len == 0 || (u128::from(ip) ^ u128::from(net)).checked_shr(shift) == Some(0)
}

/// A host given as an IP address: dotted IPv4 (also in the shorter, octal and hexadecimal
/// forms `inet_aton` and so the system resolver accept, such as `127.1` or `0x7f000001`),
/// IPv6, or IPv6 in brackets. `None` for a name.
pub fn parse_literal(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip);
    }
    inet_aton(host).map(IpAddr::V4)
}

/// IPv4 in the forms of BSD's `inet_aton`: one to four parts, each decimal, octal (leading
/// 0) or hexadecimal (0x), the last one filling the remaining bytes.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(aton_number(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut address: u32 = 0;
    for (index, value) in leading.iter().enumerate() {
        if *value > 0xff {
            return None;
        }
        address |= value << (24 - 8 * index);
    }
    let remaining_bits = 32 - 8 * leading.len();
    if remaining_bits < 32 && *last >> remaining_bits != 0 {
        return None;
    }
    Some(Ipv4Addr::from(address | last))
}

fn aton_number(part: &str) -> Option<u32> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is 0 to inet_aton.
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        refused_reason(ip)
    }

    /// Each IPv4 range: its first and last address are refused for its reason, the
    /// addresses just outside it are public (or refused for another range's reason).
    #[test]
    fn every_ipv4_range_is_refused_and_its_neighbours_are_not() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            // inside (first), inside (last), just below, just above, reason
            ("0.0.0.0", "0.255.255.255", "", "1.0.0.0", "0.0.0.0/8"),
            (
                "10.0.0.0",
                "10.255.255.255",
                "9.255.255.255",
                "11.0.0.0",
                PRIVATE,
            ),
            (
                "100.64.0.0",
                "100.127.255.255",
                "100.63.255.255",
                "100.128.0.0",
                "100.64.0.0/10",
            ),
            (
                "127.0.0.0",
                "127.255.255.255",
                "126.255.255.255",
                "128.0.0.0",
                LOOPBACK,
            ),
            (
                "169.254.0.0",
                "169.254.255.255",
                "169.253.255.255",
                "169.255.0.0",
                LINK_LOCAL,
            ),
            (
                "172.16.0.0",
                "172.31.255.255",
                "172.15.255.255",
                "172.32.0.0",
                PRIVATE,
            ),
            (
                "192.0.0.0",
                "192.0.0.255",
                "191.255.255.255",
                "192.0.1.0",
                "192.0.0.0/24",
            ),
            (
                "192.0.2.0",
                "192.0.2.255",
                "192.0.1.255",
                "192.0.3.0",
                DOCUMENTATION,
            ),
            (
                "192.88.99.0",
                "192.88.99.255",
                "192.88.98.255",
                "192.88.100.0",
                "6to4",
            ),
            (
                "192.168.0.0",
                "192.168.255.255",
                "192.167.255.255",
                "192.169.0.0",
                PRIVATE,
            ),
            (
                "198.18.0.0",
                "198.19.255.255",
                "198.17.255.255",
                "198.20.0.0",
                "198.18.0.0/15",
            ),
            (
                "198.51.100.0",
                "198.51.100.255",
                "198.51.99.255",
                "198.51.101.0",
                DOCUMENTATION,
            ),
            (
                "203.0.113.0",
                "203.0.113.255",
                "203.0.112.255",
                "203.0.114.0",
                DOCUMENTATION,
            ),
            (
                "224.0.0.0",
                "239.255.255.255",
                "223.255.255.255",
                "",
                MULTICAST,
            ),
            ("240.0.0.0", "255.255.255.254", "", "", "240.0.0.0/4"),
            ("255.255.255.255", "255.255.255.255", "", "", "broadcast"),
        ];
        for (first, last, below, above, expected) in cases {
            for inside in [first, last] {
                let got = reason(inside);
                assert!(
                    got.is_some_and(|r| r.contains(expected)),
                    "{inside}: {got:?}, expected {expected}"
                );
            }
            for outside in [below, above].into_iter().filter(|a| !a.is_empty()) {
                let got = reason(outside);
                assert!(
                    got.is_none_or(|r| !r.contains(expected)),
                    "{outside} is outside the {expected} range: {got:?}"
                );
            }
        }
        // Multicast ends where the reserved range starts.
        assert_eq!(reason("239.255.255.255"), Some(MULTICAST));
        assert!(reason("240.0.0.0").is_some_and(|r| r.contains("reserved")));
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.169.0.0",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2001:db9::1",
            "2003::1",
            "3ffe::1",
            "3fff:1000::1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(reason(public), None, "{public}");
        }
    }

    #[test]
    fn every_ipv6_range_is_refused_and_its_neighbours_are_not() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            // inside, inside, just outside, reason
            ("::", "::", &["::2"], UNSPECIFIED),
            ("::1", "::1", &["::2"], LOOPBACK),
            (
                "::2",
                "::ffff:ffff",
                &["::1:0:0", "::ffff:0:0"],
                "IPv4-compatible",
            ),
            (
                "::ffff:0:0:0",
                "::ffff:0:ffff:ffff",
                &["::fffe:ffff:ffff:ffff", "::1:0:0:0:0"],
                "IPv4-translated",
            ),
            (
                "100::",
                "100::ffff:ffff:ffff:ffff",
                &["100:0:0:1::"],
                "discard-only",
            ),
            (
                "2001::",
                "2001:1ff:ffff::",
                &["2000:ffff::", "2001:200::"],
                "2001::/23",
            ),
            (
                "2001:db8::",
                "2001:db8:ffff::1",
                &["2001:db7:ffff::", "2001:db9::"],
                DOCUMENTATION,
            ),
            (
                "3fff::",
                "3fff:fff:ffff::1",
                &["3ffe:ffff::", "3fff:1000::"],
                DOCUMENTATION,
            ),
            (
                "fc00::",
                "fdff:ffff::1",
                &["fbff:ffff::", "fe00::"],
                "unique local",
            ),
            (
                "fe80::",
                "febf:ffff::1",
                &["fe7f:ffff::", "fec0::"],
                LINK_LOCAL,
            ),
            (
                "fec0::",
                "feff:ffff::1",
                &["febf:ffff::", "ff00::"],
                "site-local",
            ),
            ("ff00::", "ffff:ffff::1", &["feff:ffff::"], MULTICAST),
        ];
        for (first, last, outside, expected) in cases {
            for inside in [first, last] {
                let got = reason(inside);
                assert!(
                    got.is_some_and(|r| r.contains(expected)),
                    "{inside}: {got:?}, expected {expected}"
                );
            }
            for neighbour in *outside {
                let got = reason(neighbour);
                assert!(
                    got.is_none_or(|r| !r.contains(expected)),
                    "{neighbour} is outside the {expected} range: {got:?}"
                );
            }
        }
    }

    #[test]
    fn addresses_outside_global_unicast_are_refused() {
        for reserved in ["4000::1", "1000::1", "e000::1", "::1:0:0", "200::1"] {
            assert_eq!(reason(reserved), Some(NOT_GLOBAL), "{reserved}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_by_their_ipv4_address() {
        assert_eq!(reason("::ffff:127.0.0.1"), Some(LOOPBACK));
        assert_eq!(reason("::ffff:10.1.2.3"), Some(PRIVATE));
        assert_eq!(reason("::ffff:169.254.169.254"), Some(LINK_LOCAL));
        assert!(reason("::ffff:0.0.0.0").is_some());
        assert_eq!(reason("::ffff:7f00:1"), Some(LOOPBACK), "hex spelling");
        assert_eq!(reason("::ffff:8.8.8.8"), None);
    }

    #[test]
    fn nat64_addresses_are_judged_by_their_ipv4_address() {
        assert_eq!(reason("64:ff9b::127.0.0.1"), Some(LOOPBACK));
        assert_eq!(reason("64:ff9b::a9fe:a9fe"), Some(LINK_LOCAL));
        assert_eq!(reason("64:ff9b::8.8.8.8"), None);
        // Just outside the /96: no longer NAT64, and outside 2000::/3.
        assert_eq!(reason("64:ff9b:0:0:0:1::"), Some(NOT_GLOBAL));
        // Local-use NAT64: whatever it seems to carry (its layout is the site's choice).
        for local in ["64:ff9b:1::8.8.8.8", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"] {
            assert!(
                reason(local).is_some_and(|r| r.contains("local-use NAT64")),
                "{local}"
            );
        }
        assert_eq!(
            reason("64:ff9b:0:ffff:ffff:ffff:ffff:ffff"),
            Some(NOT_GLOBAL)
        );
        assert_eq!(
            reason("64:ff9b:2::8.8.8.8"),
            Some(NOT_GLOBAL),
            "outside the /48"
        );
    }

    #[test]
    fn six_to_four_addresses_are_judged_by_their_ipv4_address() {
        assert_eq!(reason("2002:7f00:0001::1"), Some(LOOPBACK));
        assert_eq!(reason("2002:c0a8:0101::1"), Some(PRIVATE));
        assert_eq!(reason("2002:0808:0808::1"), None);
        assert_eq!(reason("2001:ffff::1"), None, "just below 2002::/16");
        assert_eq!(reason("2003::1"), None, "just above 2002::/16");
    }

    #[test]
    fn literals_are_read_in_every_spelling_the_resolver_accepts() {
        let v4 = |a, b, c, d| Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        assert_eq!(parse_literal("169.254.169.254"), v4(169, 254, 169, 254));
        assert_eq!(parse_literal(" 10.0.0.1 "), v4(10, 0, 0, 1));
        assert_eq!(parse_literal("127.1"), v4(127, 0, 0, 1));
        assert_eq!(parse_literal("0x7f000001"), v4(127, 0, 0, 1));
        assert_eq!(parse_literal("2130706433"), v4(127, 0, 0, 1));
        assert_eq!(parse_literal("0177.0.0.1"), v4(127, 0, 0, 1));
        assert_eq!(parse_literal("10.1.65535"), v4(10, 1, 255, 255));
        assert_eq!(parse_literal("0"), v4(0, 0, 0, 0));
        assert_eq!(
            parse_literal("[::1]"),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(parse_literal("::1"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(
            parse_literal("::ffff:127.0.0.1"),
            Some(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()))
        );
        for name in [
            "smtp.example.com",
            "localhost",
            "10.0.0.1.example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "1.2.16777216",
            "09.1.1.1",
            "0xg.1.1.1",
            "",
            "[smtp.example.com]",
            "1..2",
        ] {
            assert_eq!(parse_literal(name), None, "{name}");
        }
    }
}
