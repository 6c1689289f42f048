//! Which infrastructure to use: servers named by the caller's environment when they
//! answer, otherwise the local ones under target/local.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::paths::Paths;
use crate::{kafka, mail, oauth_servers, postgres, probe, services};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Postgres,
    Kafka,
    Mail,
    /// Hydra and Dovecot for the OAuth tests; after Postgres (Hydra's database) and Mail
    /// (Dovecot relays to it).
    OAuth,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Kafka => "kafka",
            Self::Mail => "mail",
            Self::OAuth => "oauth",
        }
    }
}

pub const ALL: &[Component] = &[Component::Postgres, Component::Kafka, Component::Mail];
/// What the test suite needs: everything `up` runs, and the OAuth servers.
pub const FOR_TESTS: &[Component] = &[
    Component::Postgres,
    Component::Kafka,
    Component::Mail,
    Component::OAuth,
];

pub struct OAuthServers {
    pub public_url: String,
    pub admin_url: String,
    pub imap: String,
    pub submission: String,
}

pub struct Mail {
    pub smtp: String,
    pub imap: Option<String>,
    pub api: Option<String>,
}

#[derive(Default)]
pub struct Infra {
    /// Admin URL of the local cluster, or DATABASE_URL as given by the environment.
    pub database_url: Option<String>,
    pub postgres_is_local: bool,
    pub kafka_brokers: Option<String>,
    pub mail: Option<Mail>,
    pub oauth: Option<OAuthServers>,
    /// Java runtime and Kafka jars for tests that start a private broker.
    pub private_kafka_kit: Option<(PathBuf, PathBuf)>,
    /// Local servers started by this invocation, in start order.
    pub started: Vec<Component>,
    /// Local servers that were already running (from an earlier `infra`, `test`, `up`).
    pub reused: Vec<Component>,
}

impl Infra {
    /// Provisions `wanted`; on failure stops whatever this call had started.
    pub fn provision(paths: &Paths, wanted: &[Component]) -> Result<Self> {
        let mut infra = Self::default();
        for &component in wanted {
            if let Err(e) = infra.provision_one(paths, component) {
                infra.stop_started(paths);
                return Err(e);
            }
        }
        Ok(infra)
    }

    fn provision_one(&mut self, paths: &Paths, component: Component) -> Result<()> {
        let started = match component {
            Component::Postgres => {
                if let Some(url) = external("DATABASE_URL", postgres::ADDR, |url| {
                    url_host_port(url, 5432).filter(|addr| probe::tcp_open(addr))
                }) {
                    self.database_url = Some(url);
                    return Ok(());
                }
                let started = postgres::ensure(paths)?;
                self.database_url = Some(postgres::url("postgres"));
                self.postgres_is_local = true;
                started
            }
            Component::Kafka => {
                if let Some(brokers) = external("KAFKA_BROKERS", kafka::ADDR, |brokers| {
                    brokers
                        .split(',')
                        .map(str::trim)
                        .find(|addr| probe::tcp_open(addr))
                        .map(str::to_owned)
                }) {
                    self.kafka_brokers = Some(brokers);
                    return Ok(());
                }
                let started = kafka::ensure(paths)?;
                self.kafka_brokers = Some(kafka::ADDR.to_owned());
                started
            }
            Component::Mail => {
                if let Some(smtp) = external("SEQ_TEST_SMTP_ADDR", mail::SMTP_ADDR, |addr| {
                    probe::smtp_ready(addr).then(|| addr.to_owned())
                }) {
                    self.mail = Some(Mail {
                        smtp,
                        imap: non_empty_env("SEQ_TEST_IMAP_ADDR"),
                        api: non_empty_env("SEQ_TEST_MAIL_API"),
                    });
                    return Ok(());
                }
                let started = mail::ensure(paths)?;
                self.mail = Some(Mail {
                    smtp: mail::SMTP_ADDR.to_owned(),
                    imap: Some(mail::IMAP_ADDR.to_owned()),
                    api: Some(mail::api_url()),
                });
                started
            }
            Component::OAuth => {
                let admin = self
                    .database_url
                    .clone()
                    .context("the OAuth servers need PostgreSQL, provisioned first")?;
                let relay = self
                    .mail
                    .as_ref()
                    .map(|m| m.smtp.clone())
                    .context("the OAuth servers need the mail server, provisioned first")?;
                let started = oauth_servers::ensure(paths, &admin, &relay)?;
                self.oauth = Some(OAuthServers {
                    public_url: oauth_servers::public_url(),
                    admin_url: oauth_servers::admin_url(),
                    imap: oauth_servers::DOVECOT_IMAP_ADDR.to_owned(),
                    submission: oauth_servers::DOVECOT_SUBMISSION_ADDR.to_owned(),
                });
                started
            }
        };
        if started {
            self.started.push(component);
        } else {
            self.reused.push(component);
        }
        Ok(())
    }

    /// Locates what tests need to run a Kafka broker of their own (one they may stop,
    /// unlike the shared one). A failure only warns: just those tests will fail, saying why.
    pub fn locate_private_kafka_kit(&mut self, paths: &Paths) {
        match kafka::private_broker_kit(paths) {
            Ok(kit) => self.private_kafka_kit = Some(kit),
            Err(e) => eprintln!("warning: tests that start a private kafka will fail: {e:#}"),
        }
    }

    /// Environment for `cargo test`/`cargo bench`: tests create their own databases
    /// from the admin URL.
    pub fn test_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(url) = &self.database_url {
            env.push(("DATABASE_URL", url.clone()));
        }
        if let Some(brokers) = &self.kafka_brokers {
            env.push(("KAFKA_BROKERS", brokers.clone()));
        }
        if let Some((java, libs)) = &self.private_kafka_kit {
            env.push(("SEQ_TEST_JAVA", java.display().to_string()));
            env.push(("SEQ_TEST_KAFKA_LIBS", libs.display().to_string()));
        }
        if let Some(mail) = &self.mail {
            env.push(("SEQ_TEST_SMTP_ADDR", mail.smtp.clone()));
            if let Some(imap) = &mail.imap {
                env.push(("SEQ_TEST_IMAP_ADDR", imap.clone()));
            }
            if let Some(api) = &mail.api {
                env.push(("SEQ_TEST_MAIL_API", api.clone()));
            }
        }
        if let Some(oauth) = &self.oauth {
            env.push(("SEQ_TEST_OAUTH_PUBLIC_URL", oauth.public_url.clone()));
            env.push(("SEQ_TEST_OAUTH_ADMIN_URL", oauth.admin_url.clone()));
            env.push(("SEQ_TEST_DOVECOT_IMAP_ADDR", oauth.imap.clone()));
            env.push(("SEQ_TEST_DOVECOT_SUBMISSION_ADDR", oauth.submission.clone()));
        }
        env
    }

    /// DATABASE_URL for the services and migrations: the `sequence` database locally
    /// (created if missing), or the environment's URL untouched.
    pub fn service_database_url(&self) -> Result<Option<String>> {
        match &self.database_url {
            Some(admin) if self.postgres_is_local => {
                postgres::create_database_if_missing(admin, services::DATABASE)?;
                Ok(Some(postgres::url(services::DATABASE)))
            }
            other => Ok(other.clone()),
        }
    }

    /// Best effort: reports failures and carries on so the rest still stops.
    pub fn stop_started(&self, paths: &Paths) {
        for component in self.started.iter().rev() {
            if let Err(e) = stop(paths, *component) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

pub fn stop(paths: &Paths, component: Component) -> Result<()> {
    match component {
        Component::Postgres => postgres::stop(paths),
        Component::Kafka => kafka::stop(paths),
        Component::Mail => mail::stop(paths),
        Component::OAuth => oauth_servers::stop(paths),
    }
}

/// The value of `var` when it names a server other than our local one and `reachable`
/// confirms it answers (returning the address it probed, for the progress line).
fn external(
    var: &str,
    local_addr: &str,
    reachable: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    let value = non_empty_env(var)?;
    if value.contains(local_addr) {
        // Our own instance, e.g. exported by `cargo xtask infra`: manage it as local.
        return None;
    }
    match reachable(&value) {
        Some(addr) => {
            eprintln!("{var}: using {addr} from the environment");
            Some(value)
        }
        None => {
            eprintln!("{var} is set but does not answer; using a local server instead");
            None
        }
    }
}

fn non_empty_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// `host:port` of the first host in a libpq-style URL
/// (`postgres://user:pw@host:port,host2/db?x=y`), for a reachability probe.
fn url_host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let first = hosts.split(',').next()?;
    if first.is_empty() {
        return None; // Unix socket: nothing to probe over TCP
    }
    let has_port = match first.rfind(']') {
        Some(bracket) => first[bracket..].contains(':'),
        None => first.contains(':'),
    };
    Some(if has_port {
        first.to_owned()
    } else {
        format!("{first}:{default_port}")
    })
}

/// Stops services, then Kafka and GreenMail, then PostgreSQL, and the Docker engine of
/// `cargo xtask containers` if an interrupted run left it: each component's own record (pid
/// file or data directory) says whether it runs, so this is idempotent.
pub fn stop_everything(paths: &Paths) -> Result<()> {
    services::stop_all(paths, true);
    let mut failures = Vec::new();
    if let Err(e) = crate::containers::stop_engine(paths) {
        eprintln!("warning: {e:#}");
        failures.push("dockerd");
    }
    for component in [
        Component::OAuth,
        Component::Kafka,
        Component::Mail,
        Component::Postgres,
    ] {
        if let Err(e) = stop(paths, component) {
            eprintln!("warning: {e:#}");
            failures.push(component.name());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("could not stop: {}", failures.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Infra, url_host_port};

    #[test]
    fn test_env_names_the_private_kafka_kit_when_located() {
        let mut infra = Infra {
            kafka_brokers: Some("127.0.0.1:59092".to_owned()),
            ..Infra::default()
        };
        assert!(
            !infra
                .test_env()
                .iter()
                .any(|(k, _)| k.starts_with("SEQ_TEST_JAVA"))
        );
        infra.private_kafka_kit = Some((PathBuf::from("/usr/bin/java"), PathBuf::from("/c/libs")));
        let env = infra.test_env();
        assert!(env.contains(&("SEQ_TEST_JAVA", "/usr/bin/java".to_owned())));
        assert!(env.contains(&("SEQ_TEST_KAFKA_LIBS", "/c/libs".to_owned())));
    }

    #[test]
    fn extracts_host_and_port_from_database_urls() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:55432/postgres",
                Some("127.0.0.1:55432"),
            ),
            (
                "postgresql://u:p%40ss@db.example:6432/app?sslmode=require",
                Some("db.example:6432"),
            ),
            ("postgres://db.example/app", Some("db.example:5432")),
            ("postgres://u@h1:5433,h2:5434/app", Some("h1:5433")),
            ("postgres://u@[::1]:5433/app", Some("[::1]:5433")),
            ("postgres://u@[::1]/app", Some("[::1]:5432")),
            ("postgres:///app?host=/run/postgresql", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(url_host_port(url, 5432).as_deref(), want, "{url}");
        }
    }
}
