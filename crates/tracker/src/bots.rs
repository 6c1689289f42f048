//! Telling people from machines: a pure classification of one open or click, with the reason
//! that decided it. Rules, first match wins: the trap link, a known user agent, a known
//! address range, too soon after sending, a click on a message this replica saw no open of.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use domain::config::TrackerConfig;
use ipnet::IpNet;

/// The configured rules (`tracker.bot_user_agents`, `tracker.bot_ip_ranges`,
/// `tracker.min_seconds_after_send`).
#[derive(Debug, Clone)]
pub struct BotRules {
    /// Each entry as configured (for the reason) and lower-cased (for matching).
    user_agents: Vec<(String, String)>,
    ip_ranges: Vec<IpNet>,
    min_seconds_after_send: i64,
}

/// What a request tells about itself.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub kind: HitKind,
    pub user_agent: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub sent_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Whether an open of the same message was seen before (clicks only).
    pub open_seen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    Open,
    Click,
    /// A click on the hidden link: always a bot.
    Trap,
}

impl BotRules {
    pub fn new(user_agents: &[String], ip_ranges: Vec<IpNet>, min_seconds_after_send: u64) -> Self {
        Self {
            user_agents: user_agents
                .iter()
                .map(|ua| (ua.trim().to_owned(), ua.trim().to_lowercase()))
                .filter(|(ua, _)| !ua.is_empty())
                .collect(),
            ip_ranges,
            min_seconds_after_send: i64::try_from(min_seconds_after_send).unwrap_or(i64::MAX),
        }
    }

    pub fn from_config(config: &TrackerConfig) -> Self {
        Self::new(
            &config.bot_user_agents,
            config.bot_ip_nets(),
            config.min_seconds_after_send,
        )
    }

    /// `None` for a person, or why this is a bot.
    pub fn classify(&self, hit: &Hit<'_>) -> Option<String> {
        if hit.kind == HitKind::Trap {
            return Some("trap".to_owned());
        }
        if let Some(user_agent) = hit.user_agent {
            let lower = user_agent.to_lowercase();
            if let Some((name, _)) = self.user_agents.iter().find(|(_, l)| lower.contains(l)) {
                return Some(format!("user_agent:{name}"));
            }
        }
        if let Some(ip) = hit.client_ip
            && let Some(range) = self.ip_ranges.iter().find(|r| r.contains(&ip))
        {
            return Some(format!("ip_range:{range}"));
        }
        let elapsed = (hit.now - hit.sent_at).num_seconds().max(0);
        if elapsed < self.min_seconds_after_send {
            return Some(format!("too_soon:{elapsed}s"));
        }
        if hit.kind == HitKind::Click && !hit.open_seen {
            return Some("click_without_open".to_owned());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn rules() -> anyhow::Result<BotRules> {
        let agents = ["GoogleImageProxy", "BingPreview", "python-requests", "bot"]
            .map(String::from)
            .to_vec();
        Ok(BotRules::new(
            &agents,
            vec!["17.0.0.0/8".parse()?, "2001:db8::/32".parse()?],
            5,
        ))
    }

    const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/128.0";

    /// Case, kind, user agent, client address, time of the hit, open seen, expected reason.
    type Case<'a> = (
        &'a str,
        HitKind,
        Option<&'a str>,
        Option<IpAddr>,
        DateTime<Utc>,
        bool,
        Option<&'a str>,
    );

    #[test]
    fn classifies_each_rule() -> anyhow::Result<()> {
        let rules = rules()?;
        let sent_at: DateTime<Utc> = "2026-01-01T10:00:00Z".parse()?;
        let later = sent_at + Duration::hours(1);
        let person: IpAddr = "198.51.100.7".parse()?;
        let table: Vec<Case<'_>> = vec![
            (
                "person opens",
                HitKind::Open,
                Some(BROWSER),
                Some(person),
                later,
                false,
                None,
            ),
            (
                "person clicks after open",
                HitKind::Click,
                Some(BROWSER),
                Some(person),
                later,
                true,
                None,
            ),
            (
                "no user agent, no ip",
                HitKind::Open,
                None,
                None,
                later,
                false,
                None,
            ),
            (
                "gmail proxy",
                HitKind::Open,
                Some(
                    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
                ),
                Some(person),
                later,
                false,
                Some("user_agent:GoogleImageProxy"),
            ),
            (
                "user agent matched case-insensitively",
                HitKind::Click,
                Some("Mozilla/5.0 (compatible; bingpreview/1.0b)"),
                Some(person),
                later,
                true,
                Some("user_agent:BingPreview"),
            ),
            (
                "scripts",
                HitKind::Click,
                Some("python-requests/2.31"),
                Some(person),
                later,
                true,
                Some("user_agent:python-requests"),
            ),
            (
                "apple range",
                HitKind::Open,
                Some(BROWSER),
                Some("17.58.1.2".parse()?),
                later,
                false,
                Some("ip_range:17.0.0.0/8"),
            ),
            (
                "ipv6 range",
                HitKind::Open,
                Some(BROWSER),
                Some("2001:db8:1::5".parse()?),
                later,
                false,
                Some("ip_range:2001:db8::/32"),
            ),
            (
                "too soon",
                HitKind::Open,
                Some(BROWSER),
                Some(person),
                sent_at + Duration::seconds(2),
                false,
                Some("too_soon:2s"),
            ),
            (
                "clock skew counts as zero",
                HitKind::Open,
                Some(BROWSER),
                Some(person),
                sent_at - Duration::seconds(9),
                false,
                Some("too_soon:0s"),
            ),
            (
                "exactly the minimum is fine",
                HitKind::Open,
                Some(BROWSER),
                Some(person),
                sent_at + Duration::seconds(5),
                false,
                None,
            ),
            (
                "click without open",
                HitKind::Click,
                Some(BROWSER),
                Some(person),
                later,
                false,
                Some("click_without_open"),
            ),
            (
                "trap beats everything",
                HitKind::Trap,
                Some(BROWSER),
                Some(person),
                later,
                true,
                Some("trap"),
            ),
            (
                "user agent before ip",
                HitKind::Open,
                Some("Googlebot/2.1"),
                Some("17.1.1.1".parse()?),
                later,
                false,
                Some("user_agent:bot"),
            ),
        ];
        for (case, kind, user_agent, client_ip, now, open_seen, expected) in table {
            let hit = Hit {
                kind,
                user_agent,
                client_ip,
                sent_at,
                now,
                open_seen,
            };
            assert_eq!(rules.classify(&hit).as_deref(), expected, "{case}");
        }
        Ok(())
    }

    #[test]
    fn default_configuration_catches_the_documented_agents() -> anyhow::Result<()> {
        let config = domain::config::Config::from_figment(&domain::config::figment(None)?)?;
        let rules = BotRules::from_config(&config.tracker);
        let sent_at: DateTime<Utc> = "2026-01-01T10:00:00Z".parse()?;
        for (user_agent, reason) in [
            (
                "Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
                "user_agent:GoogleImageProxy",
            ),
            (
                "Mozilla/5.0 (compatible; BingPreview/1.0b)",
                "user_agent:BingPreview",
            ),
            ("curl/8.5.0", "user_agent:curl/"),
            (
                "Mozilla/5.0 HeadlessChrome/120.0",
                "user_agent:HeadlessChrome",
            ),
            ("Mimecast-URL-Protect", "user_agent:Mimecast"),
        ] {
            let hit = Hit {
                kind: HitKind::Open,
                user_agent: Some(user_agent),
                client_ip: None,
                sent_at,
                now: sent_at + Duration::hours(1),
                open_seen: false,
            };
            assert_eq!(
                rules.classify(&hit).as_deref(),
                Some(reason),
                "{user_agent}"
            );
        }
        let apple = Hit {
            kind: HitKind::Open,
            user_agent: Some(BROWSER),
            client_ip: Some("17.0.0.1".parse()?),
            sent_at,
            now: sent_at + Duration::hours(1),
            open_seen: false,
        };
        assert_eq!(
            rules.classify(&apple).as_deref(),
            Some("ip_range:17.0.0.0/8")
        );
        Ok(())
    }
}
