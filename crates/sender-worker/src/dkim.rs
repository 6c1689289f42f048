//! DKIM signing (RFC 6376) of composed emails, with the keys of `sender_worker.dkim`.
//!
//! An email whose From domain has a key (compared case-insensitively, exactly: a key for
//! `example.com` does not sign mail from `news.example.com`) gets a `DKIM-Signature` with
//! relaxed/relaxed canonicalization over [`SIGNED_HEADERS`]. Sign last, after every header is
//! set: a header changed afterwards breaks the signature.
//!
//! Keys: RSA as PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM; Ed25519 as
//! PKCS#8 PEM (what `openssl genpkey -algorithm ed25519` writes) or, as lettre takes it, the
//! base64 of the 32-byte seed. Key material never reaches `Debug` output or error messages.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use domain::config::{DkimAlgorithm, DkimKeyConfig};
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{HeaderName, HeaderValue};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey as _, LineEnding};
use rsa::pkcs8::{DecodePrivateKey as _, PrivateKeyInfo, SecretDocument};
use secrecy::{ExposeSecret as _, SecretString};

/// The headers every signature covers. Headers an email lacks (`In-Reply-To` and `References`
/// of a first step) are signed as absent, so they cannot be added in transit either.
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
];

/// The OID of Ed25519 keys in PKCS#8 (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("sender_worker.dkim[{index}] ({domain}): cannot read private_key_file {}", path.display())]
    ReadKeyFile {
        index: usize,
        domain: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "sender_worker.dkim[{index}] ({domain}): needs exactly one of private_key and private_key_file"
    )]
    KeySource { index: usize, domain: String },
    #[error(
        "sender_worker.dkim[{index}] ({domain}): the private key is not a usable {algorithm} key: {reason}"
    )]
    InvalidKey {
        index: usize,
        domain: String,
        algorithm: &'static str,
        /// What the parser said; never the key itself.
        reason: String,
    },
    #[error("sender_worker.dkim[{index}] ({domain}): another key already signs this domain")]
    DuplicateDomain { index: usize, domain: String },
}

/// The DKIM keys by signing domain.
#[derive(Default)]
pub struct DkimSigners {
    /// Keyed by the lowercased domain.
    keys: HashMap<String, Signer>,
}

struct Signer {
    selector: String,
    algorithm: DkimAlgorithm,
    config: DkimConfig,
}

impl fmt::Debug for DkimSigners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_map()
            .entries(keys.into_iter().map(|(domain, signer)| {
                (
                    domain,
                    format!("{} ({:?}, key redacted)", signer.selector, signer.algorithm),
                )
            }))
            .finish()
    }
}

impl DkimSigners {
    /// Loads every key, reading `private_key_file`s. Fails on the first key that cannot be
    /// read or parsed, naming its `sender_worker.dkim[i]` and domain.
    pub fn from_config(keys: &[DkimKeyConfig]) -> Result<Self, DkimError> {
        let mut signers = Self::default();
        for (index, key) in keys.iter().enumerate() {
            let domain = key.domain.trim().to_owned();
            let pem = read_key(index, key)?;
            let signing_key =
                signing_key(pem.expose_secret(), key.algorithm).map_err(|reason| {
                    DkimError::InvalidKey {
                        index,
                        domain: domain.clone(),
                        algorithm: algorithm_name(key.algorithm),
                        reason,
                    }
                })?;
            let headers = SIGNED_HEADERS
                .iter()
                .map(|name| HeaderName::new_from_ascii_str(name))
                .collect();
            let config = DkimConfig::new(
                key.selector.trim().to_owned(),
                domain.clone(),
                signing_key,
                headers,
                DkimCanonicalization {
                    header: DkimCanonicalizationType::Relaxed,
                    body: DkimCanonicalizationType::Relaxed,
                },
            );
            let signer = Signer {
                selector: key.selector.trim().to_owned(),
                algorithm: key.algorithm,
                config,
            };
            let lowercase = domain.to_ascii_lowercase();
            if signers.keys.contains_key(&lowercase) {
                return Err(DkimError::DuplicateDomain { index, domain });
            }
            signers.keys.insert(lowercase, signer);
        }
        Ok(signers)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether mail from `domain` is signed.
    pub fn has_key(&self, domain: &str) -> bool {
        self.keys.contains_key(&domain.trim().to_ascii_lowercase())
    }

    /// Adds a `DKIM-Signature` to `message` when `from_domain` (the domain of its From
    /// address) has a key; returns whether it did.
    pub fn sign(&self, message: &mut Message, from_domain: &str) -> bool {
        let Some(signer) = self.keys.get(&from_domain.trim().to_ascii_lowercase()) else {
            return false;
        };
        // lettre looks the signed headers up among the message's own headers, but a MIME
        // body's `Content-Type` is written by the body part, after them. Lend the message a
        // copy while it is signed, so the signature covers what a verifier sees.
        let borrowed = part_headers(message);
        let names: Vec<&str> = borrowed.iter().map(|(name, _)| *name).collect();
        for (_, header) in borrowed {
            message.headers_mut().insert_raw(header);
        }
        message.sign(&signer.config);
        for name in names {
            message.headers_mut().remove_raw(name);
        }
        true
    }
}

fn algorithm_name(algorithm: DkimAlgorithm) -> &'static str {
    match algorithm {
        DkimAlgorithm::Rsa => "RSA",
        DkimAlgorithm::Ed25519 => "Ed25519",
    }
}

fn read_key(index: usize, key: &DkimKeyConfig) -> Result<SecretString, DkimError> {
    let domain = || key.domain.trim().to_owned();
    match (&key.private_key, &key.private_key_file) {
        (Some(pem), None) => Ok(pem.clone()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(SecretString::from)
            .map_err(|source| DkimError::ReadKeyFile {
                index,
                domain: domain(),
                path: path.clone(),
                source,
            }),
        _ => Err(DkimError::KeySource {
            index,
            domain: domain(),
        }),
    }
}

/// The key in the form lettre parses: PKCS#1 PEM for RSA, the base64 seed for Ed25519.
fn signing_key(text: &str, algorithm: DkimAlgorithm) -> Result<DkimSigningKey, String> {
    let text = text.trim();
    let is_pkcs8 = text.starts_with("-----BEGIN PRIVATE KEY-----");
    let (lettre_form, lettre_algorithm) = match algorithm {
        DkimAlgorithm::Rsa if is_pkcs8 => {
            let key = RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| e.to_string())?;
            let pkcs1 = key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (
                SecretString::from(pkcs1.as_str()),
                DkimSigningAlgorithm::Rsa,
            )
        }
        DkimAlgorithm::Rsa => (SecretString::from(text), DkimSigningAlgorithm::Rsa),
        DkimAlgorithm::Ed25519 if text.starts_with("-----BEGIN") => {
            (ed25519_seed(text)?, DkimSigningAlgorithm::Ed25519)
        }
        DkimAlgorithm::Ed25519 => (SecretString::from(text), DkimSigningAlgorithm::Ed25519),
    };
    DkimSigningKey::new(lettre_form.expose_secret(), lettre_algorithm).map_err(|e| e.to_string())
}

/// The base64 of the 32-byte seed of an Ed25519 PKCS#8 PEM key (RFC 8410).
fn ed25519_seed(pem: &str) -> Result<SecretString, String> {
    let (label, document) = SecretDocument::from_pem(pem).map_err(|e| e.to_string())?;
    if label != "PRIVATE KEY" {
        return Err(format!(
            "expected a PKCS#8 \"PRIVATE KEY\" PEM, found \"{label}\""
        ));
    }
    let info = PrivateKeyInfo::try_from(document.as_bytes()).map_err(|e| e.to_string())?;
    if info.algorithm.oid.to_string() != ED25519_OID {
        return Err(format!(
            "the PKCS#8 key's algorithm is {}, not Ed25519",
            info.algorithm.oid
        ));
    }
    // CurvePrivateKey ::= OCTET STRING, of the 32-byte seed.
    match info.private_key {
        [0x04, 0x20, seed @ ..] if seed.len() == 32 => Ok(SecretString::from(
            base64::engine::general_purpose::STANDARD.encode(seed),
        )),
        _ => Err("the Ed25519 private key is not a 32-byte seed".to_owned()),
    }
}

/// The signed headers that the formatted message has but its own headers lack: those the MIME
/// body part writes (`Content-Type`).
fn part_headers(message: &Message) -> Vec<(&'static str, HeaderValue)> {
    let formatted = message.formatted();
    let head_end = formatted
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(formatted.len());
    let head = String::from_utf8_lossy(formatted.get(..head_end).unwrap_or_default());
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str("\r\n");
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name, value.trim_start().to_owned()));
        }
    }
    SIGNED_HEADERS
        .iter()
        .filter(|name| message.headers().get_raw(name).is_none())
        .filter_map(|name| {
            let (_, encoded) = fields
                .iter()
                .find(|(field, _)| field.eq_ignore_ascii_case(name))?;
            let raw = encoded.replace("\r\n", "");
            let value = HeaderValue::dangerous_new_pre_encoded(
                HeaderName::new_from_ascii_str(name),
                raw,
                encoded.clone(),
            );
            Some((*name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests;
