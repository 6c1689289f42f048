//! What handlers share: the pool, the API settings, the secret cipher, the outbound guard,
//! the rate limiter, the topic names of the records the API writes to the outbox, and the
//! OAuth clients of mailboxes connected with Google or Microsoft.

use std::num::NonZeroU32;
use std::sync::Arc;

use domain::clock::{Clock, SystemClock};
use domain::config::{ApiConfig, OAuthConfig};
use domain::crypto::SecretCipher;
use domain::db::PgPool;
use domain::kafka::TopicNames;
use domain::oauth::access::TOKEN_TIMEOUT;
use domain::oauth::{AccessTokens, TokenClient, TokenError};
use domain::outbound::OutboundGuard;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: ApiConfig,
    /// None when `security.encryption_keys` is empty: mailbox writes then answer an error
    /// instead of storing a password unencrypted.
    pub cipher: Option<SecretCipher>,
    /// Every connection to a tenant's mail servers (`verify`) goes through it, and mailbox
    /// hosts given as refused IP addresses are rejected when stored.
    pub outbound: OutboundGuard,
    pub limiter: Arc<DefaultKeyedRateLimiter<Uuid>>,
    /// Where outbox records written by the API go (a resolved message's `sent` event).
    pub topics: TopicNames,
    pub oauth: OAuth,
}

/// What connecting, verifying and deleting OAuth mailboxes needs.
#[derive(Clone)]
pub struct OAuth {
    pub config: OAuthConfig,
    /// Code exchange and revocation, through the outbound guard.
    pub client: TokenClient,
    /// The access tokens `verify` logs in with; `None` without encryption keys.
    pub access: Option<AccessTokens>,
    pub clock: Arc<dyn Clock>,
}

impl OAuth {
    pub fn new(
        config: OAuthConfig,
        pool: PgPool,
        cipher: Option<&SecretCipher>,
        outbound: OutboundGuard,
        mailbox_events_topic: String,
    ) -> Result<Self, TokenError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let client = TokenClient::new(outbound, clock.clone(), TOKEN_TIMEOUT)?;
        let access = cipher.map(|cipher| {
            AccessTokens::new(
                pool,
                Arc::new(cipher.clone()),
                client.clone(),
                config.clone(),
                clock.clone(),
                mailbox_events_topic,
            )
        });
        Ok(Self {
            config,
            client,
            access,
            clock,
        })
    }
}

impl AppState {
    pub fn new(
        pool: PgPool,
        config: ApiConfig,
        cipher: Option<SecretCipher>,
        outbound: OutboundGuard,
        topics: TopicNames,
        oauth: OAuth,
    ) -> Self {
        let per_second = NonZeroU32::new(config.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            pool,
            config,
            cipher,
            outbound,
            limiter: Arc::new(RateLimiter::keyed(quota)),
            topics,
            oauth,
        }
    }
}
