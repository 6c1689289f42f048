//! PKCE (RFC 7636) with the S256 method, and the `state` of an authorization request: both
//! 256 random bits, base64url without padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The only `code_challenge_method` sent: `plain` would put the verifier itself in the URL.
pub const METHOD: &str = "S256";

/// A code verifier and its challenge. The verifier is kept with the request's `state` until
/// the code comes back; the challenge goes in the authorization URL.
#[derive(Debug)]
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl Pkce {
    /// A fresh pair: 32 random bytes make a 43-character verifier of unreserved characters
    /// (RFC 7636 4.1 asks for 43 to 128).
    pub fn generate() -> Self {
        Self::from_verifier(SecretString::from(random_base64url()))
    }

    /// The pair of a verifier already made (a stored one, or a test vector).
    pub fn from_verifier(verifier: SecretString) -> Self {
        let challenge = challenge_of(verifier.expose_secret());
        Pkce {
            verifier,
            challenge,
        }
    }

    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// `base64url(sha256(verifier))`, the `code_challenge` parameter.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

/// The `state` of an authorization request: unguessable, so a callback can only complete a
/// request this platform started (CSRF, RFC 6749 10.12).
pub fn random_state() -> String {
    random_base64url()
}

fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_base64url() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_unreserved(c: char) -> bool {
        c.is_ascii_alphanumeric() || "-._~".contains(c)
    }

    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            pkce.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifier_is_43_unreserved_characters_and_matches_its_challenge() {
        let pkce = Pkce::generate();
        let verifier = pkce.verifier().expose_secret();
        assert_eq!(verifier.len(), 43);
        assert!(verifier.chars().all(is_unreserved), "{verifier}");
        assert_eq!(pkce.challenge(), challenge_of(verifier));
        assert_ne!(
            Pkce::generate().verifier().expose_secret(),
            verifier,
            "each pair is random"
        );
    }

    #[test]
    fn state_is_256_random_bits_base64url() {
        let state = random_state();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&state).map(|b| b.len()).ok(),
            Some(32)
        );
        assert!(state.chars().all(is_unreserved), "{state}");
        assert_ne!(random_state(), state);
    }

    #[test]
    fn debug_hides_the_verifier() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert!(!format!("{pkce:?}").contains("dBjftJeZ4CVP"));
    }
}
