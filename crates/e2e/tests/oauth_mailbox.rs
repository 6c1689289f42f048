//! A mailbox connected with OAuth, end to end against real servers: ORY Hydra plays Google
//! (authorization code flow, rotating refresh tokens), Dovecot its mail servers (XOAUTH2 only,
//! every token checked at Hydra; submissions relayed to GreenMail, where the prospects read).
//! The mailbox is connected through the API as a user's browser would (authorize, Hydra's
//! login and consent, the API's callback). The real sender workers send over SMTP XOAUTH2 (a
//! refused access token is refreshed once and the send goes through), the real inbox watcher
//! reads the reply over IMAP XOAUTH2 and the scheduler stops the enrollment; an expired
//! access token is refreshed once for two workers; a revoked grant makes the mailbox
//! `reconnect_required` with its message waiting, and a reconnect through the API sends it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use domain::clock::{Clock, SystemClock};
use domain::config::{Config, OAuthProviderConfig};
use domain::crypto::SecretCipher;
use domain::db::mailbox_oauth::{self, access_token_context, refresh_token_context};
use domain::kafka::{TopicNames, ensure_topics};
use domain::mail::Security;
use domain::oauth::{AccessTokens, TokenClient};
use domain::testing::greenmail::received;
use domain::testing::oauth::{
    self, AccessTokenLifespans, AuthorizationServer, OAuthClient, SCOPE, append_to_dovecot_inbox,
};
use domain::testing::{
    TestDatabase, poll_until, quick_inbox_watcher, test_config_for, test_outbound_guard,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);
const SUBJECT: &str = "Quick question";
const ADMIN_TOKEN: &str = "e2e-oauth-admin-token-0123456789abcdef";
/// Where the callback sends the browser back to the client's application (nothing listens:
/// the test reads the redirect).
const RETURN_URL: &str = "http://127.0.0.1:9/mailboxes";

struct World {
    db: TestDatabase,
    config: Config,
    cipher: SecretCipher,
    server: AuthorizationServer,
    client: OAuthClient,
    api_url: String,
    key: String,
    http: reqwest::Client,
    workspace: Uuid,
    sequence: Uuid,
    mailbox: Uuid,
    seller: String,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

fn text(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("not a string: {value}"))
}

fn hydra_provider(
    server: &AuthorizationServer,
    client: &OAuthClient,
) -> anyhow::Result<OAuthProviderConfig> {
    let submission = oauth::dovecot_submission_addr()?;
    let imap = oauth::dovecot_imap_addr()?;
    Ok(OAuthProviderConfig {
        client_id: client.id.clone(),
        client_secret: SecretString::from(client.secret.clone()),
        tenant: String::new(),
        authorize_url: server.authorization_endpoint(),
        token_url: server.token_endpoint(),
        revoke_url: server.revocation_endpoint(),
        scopes: SCOPE.split(' ').map(str::to_owned).collect(),
        authorize_params: BTreeMap::new(),
        smtp_host: submission.ip().to_string(),
        smtp_port: submission.port(),
        smtp_security: Security::None,
        imap_host: imap.ip().to_string(),
        imap_port: imap.port(),
        imap_security: Security::None,
    })
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        // The callback's URL is the client's registered redirect URI: the api's port first.
        let api_listener = TcpListener::bind("127.0.0.1:0")?;
        let api_url = format!("http://127.0.0.1:{}", api_listener.local_addr()?.port());
        let redirect_uri = format!("{api_url}/api/v1/oauth/callback");
        let server = AuthorizationServer::from_env()?;
        let client = server
            .create_client(
                &redirect_uri,
                AccessTokenLifespans {
                    from_code: Some(Duration::from_secs(600)),
                    from_refresh: Some(Duration::from_secs(600)),
                },
            )
            .await?;
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        config.api.admin_token = ADMIN_TOKEN.to_owned().into();
        config.scheduler.poll_interval_ms = 100;
        config.tracker.public_url = "https://track.test".to_owned();
        quick_inbox_watcher(&mut config);
        // Every send logs in (a connection kept open stays logged in after a revocation, as
        // at Google).
        config.sender_worker.messages_per_connection = 1;
        config.oauth.redirect_url = redirect_uri;
        config.oauth.providers.google = hydra_provider(&server, &client)?;
        let topics = TopicNames::from_config(&config.kafka);
        ensure_topics(&config.kafka, &topics.all()).await?;
        let cipher = config.security.cipher()?;

        let shutdown = CancellationToken::new();
        let api = api::Application::build_with_listener(config.clone(), api_listener)?;
        let services = vec![("api", tokio::spawn(api.run_until_stopped(shutdown.clone())))];
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = http
            .post(format!("{api_url}/api/v1/workspaces"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "oauth"}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "workspace: {}", response.status());
        let body: Value = response.json().await?;
        let key = text(&body["api_key"]["key"])?;
        let workspace: Uuid = text(&body["workspace"]["id"])?.parse()?;

        let sequence = Uuid::now_v7();
        let seller = format!("seller-{}@example.com", sequence.simple());
        for sql in [
            format!(
                "INSERT INTO sequences (id, workspace_id, name, status, stop_on_reply, \
                                        send_days, window_start, window_end, timezone, \
                                        use_contact_timezone) \
                 VALUES ('{sequence}', '{workspace}', 'oauth', 'active', true, \
                         '{{1,2,3,4,5,6,7}}', '00:00', '23:59:59', 'UTC', false)"
            ),
            format!(
                "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, \
                                    wait_days, thread_with_previous) \
                 VALUES ('{}', '{sequence}', 1, 1, '{SUBJECT}', 'Hi {{{{first_name}}}}!', 0, \
                         false), \
                        ('{}', '{sequence}', 2, 2, 'Following up', 'Hi again.', 3, true)",
                Uuid::now_v7(),
                Uuid::now_v7()
            ),
        ] {
            db.exec(&sql).await?;
        }
        let mut world = World {
            db,
            config,
            cipher,
            server,
            client,
            api_url,
            key,
            http,
            workspace,
            sequence,
            mailbox: Uuid::nil(),
            seller,
            shutdown,
            services,
        };
        world.mailbox = world
            .connect(
                "/mailboxes/oauth/google/authorize",
                json!({"from_name": "Ana", "daily_limit": 1000, "min_interval_seconds": 0,
                       "jitter_seconds": 0, "login_hint": world.seller,
                       "return_url": RETURN_URL}),
            )
            .await?;
        world
            .db
            .exec(&format!(
                "INSERT INTO sequence_mailboxes (sequence_id, mailbox_id) \
                 VALUES ('{sequence}', '{}')",
                world.mailbox
            ))
            .await?;
        world.start_services()?;
        Ok(world)
    }

    /// A user's trip: the API's authorization URL (from `path` with `body`), Hydra's login
    /// and consent as the seller, the browser sent to the API's callback, which redirects to
    /// the return URL: the connected mailbox's id.
    async fn connect(&self, path: &str, body: Value) -> anyhow::Result<Uuid> {
        let response = self
            .http
            .post(format!("{}/api/v1{path}", self.api_url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        anyhow::ensure!(status == 200, "{path}: {status} {answer}");
        let start = reqwest::Url::parse(&text(&answer["authorization_url"])?)?;
        let callback = self
            .server
            .authorize_url_as(&self.client, &start, &self.seller)
            .await?;
        anyhow::ensure!(
            callback.as_str().starts_with(&self.api_url),
            "Hydra sent the browser to {callback}"
        );
        let response = self.http.get(callback).send().await?;
        anyhow::ensure!(response.status() == 303, "callback: {}", response.status());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("the callback redirected nowhere"))?;
        let back = reqwest::Url::parse(location)?;
        anyhow::ensure!(back.as_str().starts_with(RETURN_URL), "back to {back}");
        let param = |name: &str| {
            back.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        anyhow::ensure!(
            param("status").as_deref() == Some("connected"),
            "not connected: {back}"
        );
        Ok(param("mailbox_id")
            .ok_or_else(|| anyhow::anyhow!("no mailbox_id in {back}"))?
            .parse()?)
    }

    /// The mailbox as the API shows it.
    async fn mailbox_view(&self) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/mailboxes/{}",
                self.api_url, self.mailbox
            ))
            .bearer_auth(&self.key)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "mailbox: {}", response.status());
        Ok(response.json().await?)
    }

    /// Two sender workers (so two race for an expired token), the scheduler and the watcher.
    fn start_services(&mut self) -> anyhow::Result<()> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let listener = || TcpListener::bind("127.0.0.1:0");
        for name in ["sender worker 1", "sender worker 2"] {
            let sender = sender_worker::Application::build_with(
                self.config.clone(),
                listener()?,
                Arc::clone(&clock),
            )?;
            self.services.push((
                name,
                tokio::spawn(sender.run_until_stopped(self.shutdown.clone())),
            ));
        }
        let watcher = inbox_watcher::Application::build_with(self.config.clone(), listener()?)?;
        self.services.push((
            "inbox watcher",
            tokio::spawn(watcher.run_until_stopped(self.shutdown.clone())),
        ));
        let scheduler = scheduler::Application::build_with(
            self.config.clone(),
            listener()?,
            Arc::clone(&clock),
        )?;
        self.services.push((
            "scheduler",
            tokio::spawn(scheduler.run_until_stopped(self.shutdown.clone())),
        ));
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for (name, task) in self.services {
            task.await?
                .map_err(|e| e.context(format!("the {name} ended with an error")))?;
        }
        Ok(())
    }

    /// Enrolls a new prospect, due now: its address and enrollment.
    async fn enroll(&self, name: &str) -> anyhow::Result<(String, Uuid)> {
        let (contact, enrollment) = (Uuid::now_v7(), Uuid::now_v7());
        let prospect = format!("{name}-{}@greenmail.test", contact.simple());
        for sql in [
            format!(
                "INSERT INTO contacts (id, workspace_id, email, first_name) \
                 VALUES ('{contact}', '{}', '{prospect}', 'Pat')",
                self.workspace
            ),
            format!(
                "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, \
                                          current_step, next_send_at) \
                 VALUES ('{enrollment}', '{}', '{}', '{contact}', 1, now())",
                self.workspace, self.sequence
            ),
        ] {
            self.db.exec(&sql).await?;
        }
        Ok((prospect, enrollment))
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.count(sql).await
    }

    async fn wait_count(&self, what: &str, sql: &str, n: i64) -> anyhow::Result<()> {
        poll_until(WAIT, what, || async {
            matches!(self.count(sql).await, Ok(found) if found == n).then_some(())
        })
        .await
    }

    /// Waits until step 1 of `enrollment` is sent and in `prospect`'s inbox: its Message-ID.
    async fn step_one_sent(&self, prospect: &str, enrollment: Uuid) -> anyhow::Result<String> {
        self.wait_count(
            "step 1 sent",
            &format!(
                "SELECT count(*) AS n FROM messages \
                  WHERE enrollment_id = '{enrollment}' AND step_order = 1 AND status = 'sent'"
            ),
            1,
        )
        .await?;
        let emails = poll_until(WAIT, "the email at GreenMail", || async {
            received(prospect).await.ok().filter(|all| !all.is_empty())
        })
        .await?;
        let header = emails[0]
            .lines()
            .find_map(|line| {
                line.split_once(':')
                    .filter(|(name, _)| name.eq_ignore_ascii_case("message-id"))
                    .map(|(_, value)| value)
            })
            .ok_or_else(|| anyhow::anyhow!("no Message-ID in {}", emails[0]))?
            .trim()
            .to_owned();
        Ok(header)
    }

    /// Makes the stored access token one the provider no longer accepts, with an expiry that
    /// says it is good: the current token is refreshed (as another replica would), which
    /// makes Hydra drop it, and then written back as the current one.
    async fn stale_access_token(&self) -> anyhow::Result<()> {
        let (_, old, generation) = self.grant().await?;
        let tokens = AccessTokens::new(
            self.db.pool()?,
            Arc::new(self.config.security.cipher()?),
            TokenClient::new(
                test_outbound_guard(),
                Arc::new(SystemClock),
                domain::oauth::access::TOKEN_TIMEOUT,
            )?,
            self.config.oauth.clone(),
            Arc::new(SystemClock),
            TopicNames::from_config(&self.config.kafka).mailbox_events,
        );
        let refreshed = tokens.after_rejection(self.mailbox, generation).await?;
        anyhow::ensure!(
            !self.server.is_active(old.expose_secret()).await?,
            "Hydra still accepts the replaced token"
        );
        let stored = self
            .cipher
            .encrypt(&old, &access_token_context(self.mailbox))?;
        let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
        self.db
            .exec(&format!(
                "UPDATE mailbox_oauth SET access_token_encrypted = decode('{hex}', 'hex'), \
                        access_token_expires_at = now() + interval '1 hour' \
                  WHERE mailbox_id = '{}' AND generation = {}",
                self.mailbox, refreshed.generation
            ))
            .await?;
        Ok(())
    }

    /// The grant's refresh token and generation as stored.
    async fn grant(&self) -> anyhow::Result<(SecretString, SecretString, i64)> {
        let grant = mailbox_oauth::find(&mut self.db.connect().await?, self.mailbox)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no grant"))?;
        let refresh = self.cipher.decrypt(
            &grant.refresh_token_encrypted,
            &refresh_token_context(self.mailbox),
        )?;
        let access = self.cipher.decrypt(
            grant
                .access_token_encrypted
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("no access token"))?,
            &access_token_context(self.mailbox),
        )?;
        Ok((refresh, access, grant.generation))
    }
}

#[tokio::test]
async fn an_oauth_mailbox_sends_reads_replies_refreshes_once_and_survives_a_revoked_grant()
-> anyhow::Result<()> {
    let world = World::start().await?;

    let view = world.mailbox_view().await?;
    assert_eq!(view["auth"]["type"], "oauth2");
    assert_eq!(view["auth"]["connected_email"], world.seller.as_str());
    assert_eq!(
        view["smtp"]["port"],
        oauth::dovecot_submission_addr()?.port()
    );

    // The stored access token is refused although it has not expired yet (replaced at the
    // provider: another replica refreshed, Hydra dropped the old token, and this one is
    // what the database still says). The sender worker's AUTH is refused, it refreshes once
    // and sends: step 1 goes out over Dovecot's submission with XOAUTH2.
    world.stale_access_token().await?;
    let (_, _, stale_generation) = world.grant().await?;
    let (pat, pat_enrollment) = world.enroll("pat").await?;
    let header = world.step_one_sent(&pat, pat_enrollment).await?;
    let (_, _, generation) = world.grant().await?;
    assert_eq!(
        generation,
        stale_generation + 1,
        "one refresh after the refusal"
    );

    // Pat answers; the watcher reads Dovecot's INBOX with XOAUTH2 and the enrollment stops.
    let (_, access, _) = world.grant().await?;
    let reply = format!(
        "From: Pat <{pat}>\r\nTo: <{seller}>\r\nSubject: Re: {SUBJECT}\r\n\
         Message-ID: <reply-{id}@prospect.test>\r\nIn-Reply-To: {header}\r\n\
         References: {header}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nSure, call me.\r\n",
        seller = world.seller,
        id = Uuid::new_v4().simple(),
        date = chrono::Utc::now().to_rfc2822(),
    );
    append_to_dovecot_inbox(&world.seller, access.expose_secret(), &reply).await?;
    world
        .wait_count(
            "Pat's enrollment stopped by the reply",
            &format!(
                "SELECT count(*) AS n FROM enrollments \
                  WHERE id = '{pat_enrollment}' AND status = 'replied'"
            ),
            1,
        )
        .await?;

    // The access token expires: three prospects due at once, two workers, one refresh. (A
    // second refresh would use the rotated-out refresh token, and Hydra would revoke the grant.)
    let (_, _, generation) = world.grant().await?;
    world
        .db
        .exec(&format!(
            "UPDATE mailbox_oauth SET access_token_expires_at = now() - interval '1 second' \
              WHERE mailbox_id = '{}'",
            world.mailbox
        ))
        .await?;
    let mut batch = Vec::new();
    for name in ["ada", "bo", "cy"] {
        batch.push(world.enroll(name).await?);
    }
    for (prospect, enrollment) in &batch {
        world.step_one_sent(prospect, *enrollment).await?;
    }
    let (refresh, access, refreshed) = world.grant().await?;
    assert_eq!(refreshed, generation + 1, "refreshed exactly once");
    assert!(world.server.is_active(access.expose_secret()).await?);

    // The user revokes the app: the next send is refused, the refresh is invalid_grant.
    world
        .server
        .revoke(&world.client, refresh.expose_secret())
        .await?;
    let (dee, dee_enrollment) = world.enroll("dee").await?;
    let mailbox = world.mailbox;
    world
        .wait_count(
            "the mailbox reconnect_required",
            &format!(
                "SELECT count(*) AS n FROM mailboxes WHERE id = '{mailbox}' \
                    AND status = 'reconnect_required' AND status_reason LIKE '%invalid_grant%'"
            ),
            1,
        )
        .await?;
    // Dee's email waits for the mailbox: not failed, its attempt not used up.
    world
        .wait_count(
            "Dee's message waiting for the mailbox",
            &format!(
                "SELECT count(*) AS n FROM messages WHERE enrollment_id = '{dee_enrollment}' \
                    AND status = 'retrying' AND retry_at IS NULL AND attempts = 0"
            ),
            1,
        )
        .await?;
    assert!(received(&dee).await?.is_empty());

    let view = world.mailbox_view().await?;
    assert_eq!(view["status"], "reconnect_required");
    assert_eq!(view["auth"]["status"], "reconnect_required");

    // The user connects the mailbox again: same mailbox, and Dee's email goes out.
    let reconnected = world
        .connect(
            &format!("/mailboxes/{mailbox}/oauth/reconnect"),
            json!({"return_url": RETURN_URL}),
        )
        .await?;
    assert_eq!(reconnected, mailbox);
    world.step_one_sent(&dee, dee_enrollment).await?;
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM messages WHERE status IN ('failed', 'unknown') \
                    AND mailbox_id = '{mailbox}'"
            ))
            .await?,
        0,
        "nothing lost"
    );
    assert_eq!(received(&dee).await?.len(), 1, "sent once");
    // One unit of the daily limit per email, however many attempts Dee's took.
    assert_eq!(
        world
            .count(&format!(
                "SELECT coalesce(sum(reserved), 0)::bigint AS n FROM mailbox_daily_usage \
                  WHERE mailbox_id = '{mailbox}'"
            ))
            .await?,
        5
    );
    world.stop().await
}
