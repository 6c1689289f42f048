//! Outgoing webhooks to the Standard Webhooks specification (issue 18): the signing secret
//! of an endpoint ([`secret`]) and the signature of a request ([`signature`]), so receivers
//! verify with any of the specification's published libraries.
//!
//! **Invariant:** a secret's text (`whsec_...`) appears only in the API's answer that creates
//! or rotates it; everywhere else it travels as `SecretString` and is stored encrypted.

pub mod event_types;
pub mod secret;
pub mod signature;

pub use secret::{SecretError, WebhookSecret};
pub use signature::{SignatureHeaders, sign};
