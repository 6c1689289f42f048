//! Signed tokens in tracking URLs (open pixel, click redirect, unsubscribe), so the tracker
//! can trust what a request names without a database lookup on the request path.
//!
//! Format (version 2): URL-safe base64 without padding of
//!
//! ```text
//! version (1 byte, = 2) | kind (1 byte: 0 open, 1 click, 2 unsubscribe, 3 trap)
//! | key id (1 byte: the first byte of SHA-256 of the signing key)
//! | sent at (4 bytes: seconds since the Unix epoch, big-endian; when the email was sent)
//! | workspace_id (16) | enrollment_id (16) | message_id (16)
//! | url (click only: the rest, UTF-8, at most MAX_URL_BYTES)
//! | tag (16 bytes: HMAC-SHA256 of everything before it, truncated to the left half)
//! ```
//!
//! An open or unsubscribe token is 95 characters. The key id picks the key to verify with
//! (rotation: tokens of an older key still listed keep verifying); the send time lets the
//! tracker tell a scanner that opens an email seconds after delivery from a person, without a
//! database lookup. A trap token sits behind a link no person sees. Binary rather than JSON keeps links short;
//! the version byte lets a later format be told apart. A 128-bit tag is ample for a MAC that
//! an attacker can only check online, one tracker request at a time.
//!
//! Tokens do not expire: an unsubscribe link must keep working for as long as the email sits
//! in someone's inbox. They are not secret either (anyone holding the email can read the ids
//! and the URL); they are only unforgeable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 2;
const KIND_OPEN: u8 = 0;
const KIND_CLICK: u8 = 1;
const KIND_UNSUBSCRIBE: u8 = 2;
const KIND_TRAP: u8 = 3;
/// Bytes of the HMAC-SHA256 output kept in a token.
const TAG_BYTES: usize = 16;
/// Version, kind, key id, send time and three ids.
const HEADER_BYTES: usize = 3 + 4 + 3 * 16;

/// Shortest accepted key. HMAC takes any length, but a short one is a configuration mistake
/// that would make every token forgeable by brute force.
pub const MIN_KEY_BYTES: usize = 32;

/// Longest click URL a token carries. Callers leave longer links untracked, since decoding
/// rejects anything longer before doing work on it.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Longest token [`TokenSigner::decode`] looks at, in characters.
pub const MAX_TOKEN_CHARS: usize = (HEADER_BYTES + MAX_URL_BYTES + TAG_BYTES).div_ceil(3) * 4;

/// What a tracking URL records. Every variant names the workspace and enrollment too, which
/// the tracker needs to publish the event without looking anything up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingAction {
    Open {
        workspace_id: Uuid,
        enrollment_id: Uuid,
        message_id: Uuid,
    },
    Click {
        workspace_id: Uuid,
        enrollment_id: Uuid,
        message_id: Uuid,
        /// Where the redirect goes; the original link of the email.
        url: String,
    },
    Unsubscribe {
        workspace_id: Uuid,
        enrollment_id: Uuid,
        message_id: Uuid,
    },
    /// A link hidden from people in the email's HTML: whatever follows it is a bot.
    Trap {
        workspace_id: Uuid,
        enrollment_id: Uuid,
        message_id: Uuid,
    },
}

/// A verified token: what it records and when its email was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub action: TrackingAction,
    pub sent_at: DateTime<Utc>,
}

impl TrackingAction {
    pub fn message_id(&self) -> Uuid {
        match self {
            Self::Open { message_id, .. }
            | Self::Click { message_id, .. }
            | Self::Unsubscribe { message_id, .. }
            | Self::Trap { message_id, .. } => *message_id,
        }
    }

    pub fn workspace_id(&self) -> Uuid {
        match self {
            Self::Open { workspace_id, .. }
            | Self::Click { workspace_id, .. }
            | Self::Unsubscribe { workspace_id, .. }
            | Self::Trap { workspace_id, .. } => *workspace_id,
        }
    }

    pub fn enrollment_id(&self) -> Uuid {
        match self {
            Self::Open { enrollment_id, .. }
            | Self::Click { enrollment_id, .. }
            | Self::Unsubscribe { enrollment_id, .. }
            | Self::Trap { enrollment_id, .. } => *enrollment_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a tracking key must be at least {MIN_KEY_BYTES} bytes, got {0}")]
    TooShort(usize),
}

/// Why a token was rejected. Variants say no more than the tracker should log; none of them
/// carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("tracking token longer than {MAX_TOKEN_CHARS} characters")]
    TooLong,
    #[error("tracking token is not URL-safe base64")]
    Encoding,
    #[error("tracking token too short")]
    Truncated,
    #[error("tracking token signature does not match any key")]
    BadSignature,
    #[error("tracking token version {0} is not supported")]
    UnknownVersion(u8),
    #[error("tracking token kind {0} is unknown")]
    UnknownKind(u8),
    #[error("tracking token payload is malformed")]
    Malformed,
}

/// Signs tokens with the primary key and accepts tokens of any configured key, so a key can be
/// rotated: add the new one as primary, keep the old one until its emails stop mattering.
#[derive(Clone)]
pub struct TokenSigner {
    /// Keyed MAC states, cloned per use instead of rehashing the key, with their key ids.
    primary: (u8, HmacSha256),
    older: Vec<(u8, HmacSha256)>,
}

impl std::fmt::Debug for TokenSigner {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("older_keys", &self.older.len())
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// At least [`MIN_KEY_BYTES`] bytes of random key.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        Self::with_keys(key, &[])
    }

    /// Signs with `primary`; verifies with `primary` and each of `older`.
    pub fn with_keys(primary: &[u8], older: &[&[u8]]) -> Result<Self, KeyError> {
        Ok(Self {
            primary: keyed(primary)?,
            older: older
                .iter()
                .map(|key| keyed(key))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The token of `action` in an email sent at `sent_at` (times before 1970 or after 2106
    /// are clamped).
    pub fn encode(&self, action: &TrackingAction, sent_at: DateTime<Utc>) -> String {
        let (kind, url) = match action {
            TrackingAction::Open { .. } => (KIND_OPEN, ""),
            TrackingAction::Click { url, .. } => (KIND_CLICK, url.as_str()),
            TrackingAction::Unsubscribe { .. } => (KIND_UNSUBSCRIBE, ""),
            TrackingAction::Trap { .. } => (KIND_TRAP, ""),
        };
        let (key_id, mac) = &self.primary;
        let seconds = u32::try_from(sent_at.timestamp().max(0)).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(HEADER_BYTES + url.len() + TAG_BYTES);
        bytes.push(VERSION);
        bytes.push(kind);
        bytes.push(*key_id);
        bytes.extend_from_slice(&seconds.to_be_bytes());
        bytes.extend_from_slice(action.workspace_id().as_bytes());
        bytes.extend_from_slice(action.enrollment_id().as_bytes());
        bytes.extend_from_slice(action.message_id().as_bytes());
        bytes.extend_from_slice(url.as_bytes());
        let tag = mac.clone().chain_update(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(tag.get(..TAG_BYTES).unwrap_or_default());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks the signature in constant time before reading anything of the payload but the
    /// key id.
    pub fn decode(&self, token: &str) -> Result<Token, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Encoding)?;
        if bytes.len() < HEADER_BYTES + TAG_BYTES {
            return Err(TokenError::Truncated);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let key_id = signed.get(2).copied().ok_or(TokenError::Truncated)?;
        let genuine = std::iter::once(&self.primary)
            .chain(&self.older)
            .filter(|(id, _)| *id == key_id)
            .any(|(_, mac)| {
                mac.clone()
                    .chain_update(signed)
                    .verify_truncated_left(tag)
                    .is_ok()
            });
        if !genuine {
            return Err(TokenError::BadSignature);
        }
        parse(signed)
    }
}

fn keyed(key: &[u8]) -> Result<(u8, HmacSha256), KeyError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort(key.len()));
    }
    let id = Sha256::digest(key).first().copied().unwrap_or_default();
    // HMAC accepts keys of any length (long ones are hashed), so this cannot fail.
    let mac = HmacSha256::new_from_slice(key).map_err(|_| KeyError::TooShort(key.len()))?;
    Ok((id, mac))
}

fn parse(signed: &[u8]) -> Result<Token, TokenError> {
    let (header, url) = signed
        .split_at_checked(HEADER_BYTES)
        .ok_or(TokenError::Truncated)?;
    let byte = |at: usize| header.get(at).copied().ok_or(TokenError::Truncated);
    let version = byte(0)?;
    if version != VERSION {
        return Err(TokenError::UnknownVersion(version));
    }
    let kind = byte(1)?;
    let seconds = header
        .get(3..7)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(TokenError::Truncated)?;
    let sent_at = DateTime::from_timestamp(i64::from(seconds), 0).ok_or(TokenError::Malformed)?;
    let id = |at: usize| {
        header
            .get(at..at + 16)
            .and_then(|bytes| Uuid::from_slice(bytes).ok())
            .ok_or(TokenError::Truncated)
    };
    let workspace_id = id(7)?;
    let enrollment_id = id(23)?;
    let message_id = id(39)?;
    let action = match kind {
        KIND_OPEN | KIND_UNSUBSCRIBE | KIND_TRAP if !url.is_empty() => {
            return Err(TokenError::Malformed);
        }
        KIND_OPEN => TrackingAction::Open {
            workspace_id,
            enrollment_id,
            message_id,
        },
        KIND_UNSUBSCRIBE => TrackingAction::Unsubscribe {
            workspace_id,
            enrollment_id,
            message_id,
        },
        KIND_TRAP => TrackingAction::Trap {
            workspace_id,
            enrollment_id,
            message_id,
        },
        KIND_CLICK => {
            let url = std::str::from_utf8(url).map_err(|_| TokenError::Malformed)?;
            TrackingAction::Click {
                workspace_id,
                enrollment_id,
                message_id,
                url: url.to_owned(),
            }
        }
        other => return Err(TokenError::UnknownKind(other)),
    };
    Ok(Token { action, sent_at })
}

#[cfg(test)]
mod tests;
