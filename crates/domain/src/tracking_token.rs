//! Sealed tokens in tracking URLs (open pixel, click redirect, unsubscribe, trap), so the
//! tracker can trust what a request names without a database lookup on the request path, and
//! nobody else can read it.
//!
//! Format (version 3): URL-safe base64 without padding of
//!
//! ```text
//! version (1 byte, = 3) | key id (1 byte: the first byte of SHA-256 of the configured key)
//! | sent at (4 bytes: seconds since the Unix epoch, big-endian; when the email was sent)
//! | sealed: kind (1 byte: 0 open, 1 click, 2 unsubscribe, 3 trap)
//!           | workspace_id (16) | enrollment_id (16) | message_id (16)
//!           | url (click only: the rest, UTF-8, at most MAX_URL_BYTES)
//! | tag (16 bytes)
//! ```
//!
//! The sealed part is encrypted with AES-256-GCM-SIV (RFC 8452) under a key derived from the
//! configured one with HKDF-SHA256 and the label [`SEALING_KEY_LABEL`], so the raw configured
//! key (which the tracker also uses to hash client addresses) never keys the cipher. The nonce
//! is the six clear bytes, zero-padded to 12: nothing is added to the token for it. GCM-SIV
//! tolerates repeated nonces (two equal plaintexts give equal tokens, nothing more), and since
//! it derives its working keys from the nonce, keying them by the send time splits a key's
//! tokens into one small set per second, far inside the algorithm's limits per nonce. Changing
//! any clear byte changes the nonce, so the tag fails. The same inputs give the same token.
//!
//! Anyone holding a token can read its version, key id and send time (which the email's
//! `Date:` header shows anyway) and a click token's length; the kind, the ids and the URL are
//! encrypted. An open or unsubscribe token is 71 bytes, 95 characters; a click token is 71
//! bytes plus its URL (for a 60-byte URL, 175 characters): the same lengths as the signed
//! version 2 tokens before. AES-GCM-SIV's 12-byte nonce may repeat, where XChaCha20-Poly1305
//! would need 24 random bytes (32 more characters in every link).
//!
//! Version 2 tokens (signed, not encrypted) are in emails already delivered, so they keep
//! verifying (constant-time HMAC-SHA256 check, as before) under the same configured keys; only
//! version 3 is issued. Their layout:
//!
//! ```text
//! version (1, = 2) | kind (1) | key id (1) | sent at (4) | workspace_id (16)
//! | enrollment_id (16) | message_id (16) | url (click only)
//! | tag (16 bytes: HMAC-SHA256 of everything before it, keyed with the configured key,
//!   truncated to the left half)
//! ```
//!
//! The key id picks the key to open with (rotation: tokens of an older key still listed keep
//! opening); the send time lets the tracker tell a scanner that opens an email seconds after
//! delivery from a person, without a database lookup. A trap token sits behind a link no
//! person sees; sealing its kind keeps a bot from telling it from a click token. Binary rather
//! than JSON keeps links short; the version byte lets a later format be told apart. A 128-bit
//! tag is ample for an attacker who can only check guesses online, one tracker request at a
//! time. Decoding bounds the input to [`MAX_TOKEN_CHARS`] before decoding base64, and checks
//! the tag (in constant time) before reading anything sealed.
//!
//! Tokens do not expire: an unsubscribe link must keep working for as long as the email sits
//! in someone's inbox.

use aes_gcm_siv::aead::{AeadInPlace as _, KeyInit as _};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The version issued: encrypted.
const VERSION: u8 = 3;
/// The version of emails sent before tokens were encrypted: verified, never issued.
const SIGNED_VERSION: u8 = 2;
const KIND_OPEN: u8 = 0;
const KIND_CLICK: u8 = 1;
const KIND_UNSUBSCRIBE: u8 = 2;
const KIND_TRAP: u8 = 3;
/// AES-GCM-SIV's tag, and the part of the HMAC-SHA256 output version 2 kept.
const TAG_BYTES: usize = 16;
/// Version, key id and send time: readable, and the nonce.
const CLEAR_BYTES: usize = 1 + 1 + 4;
/// Kind and three ids, before any URL.
const SEALED_BYTES: usize = 1 + 3 * 16;
/// Version 2: version, kind, key id, send time and three ids.
const SIGNED_HEADER_BYTES: usize = 3 + 4 + 3 * 16;
/// The shortest token of either version.
const MIN_TOKEN_BYTES: usize = CLEAR_BYTES + SEALED_BYTES + TAG_BYTES;

/// HKDF-SHA256 `info` of the AES-256-GCM-SIV key derived from each configured key: a
/// different label gives an unrelated key, so other uses of the configured keys cannot
/// collide with this one.
pub const SEALING_KEY_LABEL: &[u8] = b"sequence-service tracking token v3 AES-256-GCM-SIV";

/// Shortest accepted key. A short one is a configuration mistake that would make every token
/// forgeable and readable by brute force.
pub const MIN_KEY_BYTES: usize = 32;

/// Longest click URL a token carries. Callers leave longer links untracked, since decoding
/// rejects anything longer before doing work on it.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Longest token [`TokenSigner::decode`] looks at, in characters (both versions have the same
/// fixed overhead).
pub const MAX_TOKEN_CHARS: usize = (MIN_TOKEN_BYTES + MAX_URL_BYTES).div_ceil(3) * 4;

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

    /// The kind byte of both versions, and the URL a click carries (empty otherwise).
    fn kind_and_url(&self) -> (u8, &str) {
        match self {
            Self::Open { .. } => (KIND_OPEN, ""),
            Self::Click { url, .. } => (KIND_CLICK, url.as_str()),
            Self::Unsubscribe { .. } => (KIND_UNSUBSCRIBE, ""),
            Self::Trap { .. } => (KIND_TRAP, ""),
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
    #[error("tracking token does not authenticate under any key")]
    NotAuthentic,
    #[error("tracking token version {0} is not supported")]
    UnknownVersion(u8),
    #[error("tracking token kind {0} is unknown")]
    UnknownKind(u8),
    #[error("tracking token payload is malformed")]
    Malformed,
}

/// Seals tokens with the primary key and opens tokens of any configured key, so a key can be
/// rotated: add the new one as primary, keep the old one until its emails stop mattering.
/// (Named for the signed tokens of version 2, which it still verifies.)
#[derive(Clone)]
pub struct TokenSigner {
    primary: Key,
    older: Vec<Key>,
}

/// What one configured key becomes, prepared once instead of per token.
#[derive(Clone)]
struct Key {
    /// The first byte of SHA-256 of the configured key, as in both versions' tokens.
    id: u8,
    /// Seals and opens version 3, under the key derived with [`SEALING_KEY_LABEL`].
    cipher: Aes256GcmSiv,
    /// Verifies version 2: HMAC-SHA256 keyed with the configured key itself, cloned per use
    /// instead of rehashing the key.
    mac: HmacSha256,
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

    /// Seals with `primary`; opens with `primary` and each of `older`.
    pub fn with_keys(primary: &[u8], older: &[&[u8]]) -> Result<Self, KeyError> {
        Ok(Self {
            primary: Key::new(primary)?,
            older: older
                .iter()
                .map(|key| Key::new(key))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The token of `action` in an email sent at `sent_at` (times before 1970 or after 2106
    /// are clamped).
    pub fn encode(&self, action: &TrackingAction, sent_at: DateTime<Utc>) -> String {
        let (kind, url) = action.kind_and_url();
        let seconds = u32::try_from(sent_at.timestamp().max(0)).unwrap_or(u32::MAX);
        let mut sealed = Vec::with_capacity(SEALED_BYTES + url.len());
        sealed.push(kind);
        sealed.extend_from_slice(action.workspace_id().as_bytes());
        sealed.extend_from_slice(action.enrollment_id().as_bytes());
        sealed.extend_from_slice(action.message_id().as_bytes());
        sealed.extend_from_slice(url.as_bytes());
        self.primary.seal(seconds, sealed)
    }

    /// Opens a version 3 token, or verifies a version 2 one, checking the tag in constant time
    /// before reading anything but the clear bytes.
    pub fn decode(&self, token: &str) -> Result<Token, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Encoding)?;
        if bytes.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::Truncated);
        }
        match bytes.first().copied() {
            Some(VERSION) => self.open(&bytes),
            Some(SIGNED_VERSION) => self.verify_signed(&bytes),
            Some(other) => Err(TokenError::UnknownVersion(other)),
            None => Err(TokenError::Truncated),
        }
    }

    /// The listed keys whose id is `id`: usually one, more only if two keys share the first
    /// byte of their hash.
    fn keys(&self, id: u8) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.primary)
            .chain(&self.older)
            .filter(move |key| key.id == id)
    }

    fn open(&self, bytes: &[u8]) -> Result<Token, TokenError> {
        let (clear, rest) = bytes
            .split_first_chunk::<CLEAR_BYTES>()
            .ok_or(TokenError::Truncated)?;
        let (sealed, tag) = rest
            .split_last_chunk::<TAG_BYTES>()
            .ok_or(TokenError::Truncated)?;
        let tag = Tag::from(*tag);
        let nonce = nonce(clear);
        let [_, key_id, s0, s1, s2, s3] = *clear;
        let plain = self
            .keys(key_id)
            .find_map(|key| {
                let mut buffer = sealed.to_vec();
                key.cipher
                    .decrypt_in_place_detached(&nonce, &[], &mut buffer, &tag)
                    .ok()
                    .map(|()| buffer)
            })
            .ok_or(TokenError::NotAuthentic)?;
        let seconds = u32::from_be_bytes([s0, s1, s2, s3]);
        let (kind, rest) = plain.split_first().ok_or(TokenError::Truncated)?;
        let (ids, url) = rest.split_at_checked(3 * 16).ok_or(TokenError::Truncated)?;
        token(*kind, seconds, ids, url)
    }

    fn verify_signed(&self, bytes: &[u8]) -> Result<Token, TokenError> {
        let (signed, tag) = bytes
            .split_at_checked(bytes.len().saturating_sub(TAG_BYTES))
            .ok_or(TokenError::Truncated)?;
        let key_id = signed.get(2).copied().ok_or(TokenError::Truncated)?;
        let genuine = self.keys(key_id).any(|key| {
            key.mac
                .clone()
                .chain_update(signed)
                .verify_truncated_left(tag)
                .is_ok()
        });
        if !genuine {
            return Err(TokenError::NotAuthentic);
        }
        let (header, url) = signed
            .split_at_checked(SIGNED_HEADER_BYTES)
            .ok_or(TokenError::Truncated)?;
        let kind = header.get(1).copied().ok_or(TokenError::Truncated)?;
        let seconds = header
            .get(3..7)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(TokenError::Truncated)?;
        let ids = header.get(7..).ok_or(TokenError::Truncated)?;
        token(kind, seconds, ids, url)
    }
}

impl Key {
    fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(key.len()));
        }
        let id = Sha256::digest(key).first().copied().unwrap_or_default();
        let mut sealing_key = [0_u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, and HMAC accepts keys of any
        // length (long ones are hashed), so neither can fail.
        Hkdf::<Sha256>::new(None, key)
            .expand(SEALING_KEY_LABEL, &mut sealing_key)
            .map_err(|_| KeyError::TooShort(key.len()))?;
        let cipher = Aes256GcmSiv::new(&sealing_key.into());
        let mac =
            <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| KeyError::TooShort(key.len()))?;
        Ok(Self { id, cipher, mac })
    }

    /// The version 3 token of `sealed` (kind, ids, URL) sent at `seconds`.
    fn seal(&self, seconds: u32, mut sealed: Vec<u8>) -> String {
        let [s0, s1, s2, s3] = seconds.to_be_bytes();
        let clear = [VERSION, self.id, s0, s1, s2, s3];
        let mut bytes = Vec::with_capacity(CLEAR_BYTES + sealed.len() + TAG_BYTES);
        bytes.extend_from_slice(&clear);
        // AES-GCM-SIV refuses only plaintexts over 64 GiB; such a token would be left without
        // its tag, which the tracker refuses like any other.
        if let Ok(tag) = self
            .cipher
            .encrypt_in_place_detached(&nonce(&clear), &[], &mut sealed)
        {
            bytes.extend_from_slice(&sealed);
            bytes.extend_from_slice(&tag);
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// The clear bytes (version, key id, send time) zero-padded to AES-GCM-SIV's 12-byte nonce,
/// which binds them to the tag without repeating them as associated data.
fn nonce(clear: &[u8; CLEAR_BYTES]) -> Nonce {
    let mut nonce = [0_u8; 12];
    for (to, from) in nonce.iter_mut().zip(clear) {
        *to = *from;
    }
    Nonce::from(nonce)
}

/// The token of an authenticated `kind`, send time, three ids (48 bytes) and URL.
fn token(kind: u8, seconds: u32, ids: &[u8], url: &[u8]) -> Result<Token, TokenError> {
    let sent_at = DateTime::from_timestamp(i64::from(seconds), 0).ok_or(TokenError::Malformed)?;
    let id = |at: usize| {
        ids.get(at..at + 16)
            .and_then(|bytes| Uuid::from_slice(bytes).ok())
            .ok_or(TokenError::Truncated)
    };
    let workspace_id = id(0)?;
    let enrollment_id = id(16)?;
    let message_id = id(32)?;
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
