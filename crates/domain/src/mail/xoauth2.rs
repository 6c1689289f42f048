//! XOAUTH2, the SASL mechanism with which Google and Microsoft mail servers take an OAuth 2.0
//! access token in place of a password (SMTP `AUTH XOAUTH2`, IMAP `AUTHENTICATE XOAUTH2`).

use secrecy::{ExposeSecret, SecretString};

/// The initial client response (before base64), as Google and Microsoft define it.
pub fn initial_response(user: &str, access_token: &str) -> String {
    format!("user={user}\x01auth=Bearer {access_token}\x01\x01")
}

/// XOAUTH2 for async-imap's `Client::authenticate("XOAUTH2", ...)`.
pub struct ImapAuthenticator {
    user: String,
    access_token: SecretString,
    answered: bool,
}

impl ImapAuthenticator {
    pub fn new(user: &str, access_token: &SecretString) -> Self {
        ImapAuthenticator {
            user: user.to_owned(),
            access_token: access_token.clone(),
            answered: false,
        }
    }
}

impl async_imap::Authenticator for ImapAuthenticator {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if self.answered {
            // A second challenge is the server's JSON error on a refused token; the client
            // must answer it with an empty response to receive the tagged NO.
            return Vec::new();
        }
        self.answered = true;
        initial_response(&self.user, self.access_token.expose_secret()).into_bytes()
    }
}
