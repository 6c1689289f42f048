//! The OAuth 2.0 client side of mailboxes connected with Google or Microsoft (issue 17): the
//! authorization URL a user is sent to ([`authorize`], with [`pkce`] and `state`), and the
//! token endpoint calls ([`tokens`]: code exchange, refresh, revocation) the API and the
//! workers make. No database, no HTTP handlers: callers keep the state, verifier and tokens.
//!
//! **Invariants:** every request's connection is made by the outbound guard
//! (`OutboundGuard::connect`, purpose `oauth`: a name resolved once and judged, an address
//! in the URL judged as it is), follows no redirect and has one deadline; no token, code, verifier or client secret appears in an error's text or a log
//! line (they travel as `SecretString` and only in request bodies).

pub mod access;
mod answer;
pub mod authorize;
mod endpoint;
mod error;
mod id_token;
pub mod pkce;
pub mod tokens;

pub use access::{AccessError, AccessToken, AccessTokens};
pub use authorize::{AuthorizationRequest, authorization_url};
pub use endpoint::InvalidEndpoint;
pub use pkce::{Pkce, random_state};
pub use tokens::{TokenClient, TokenError, Tokens};
