use aes_gcm_siv::aead::{AeadInPlace as _, KeyInit as _};
use rand::{Rng as _, SeedableRng as _};

use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";
const URL: &str = "https://example.com/pricing?a=1&b=é#top";

/// Version 2 tokens of `actions()[0]` and `actions()[1]` under `KEY`, as the signer issued them
/// before tokens were encrypted (and as delivered emails still carry them).
const SIGNED_OPEN: &str = "AgA-aZ6TAAGQAAAAAHAAgAAAAAAAAAEBkAAAAABwAIAAAAAAAAACAZAAAAAAcACAAAAAAAAAA0FY2jrhnHpG-Gr8Y91bujc";
const SIGNED_CLICK: &str = "AgE-aZ6TAAGQAAAAAHAAgAAAAAAAAAEBkAAAAABwAIAAAAAAAAACAZAAAAAAcACAAAAAAAAAA2h0dHBzOi8vZXhhbXBsZS5jb20vcHJpY2luZz9hPTEmYj3DqSN0b3Cthh0zQLXvU9fvFiugLdhB";

fn signer(key: &[u8]) -> TokenSigner {
    TokenSigner::new(key).unwrap_or_else(|e| panic!("{e}"))
}

fn sent_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_000_000, 0).unwrap_or_else(|| panic!("valid time"))
}

fn ids() -> (Uuid, Uuid, Uuid) {
    (
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003),
    )
}

fn actions() -> Vec<TrackingAction> {
    let (workspace_id, enrollment_id, message_id) = ids();
    vec![
        TrackingAction::Open {
            workspace_id,
            enrollment_id,
            message_id,
        },
        TrackingAction::Click {
            workspace_id,
            enrollment_id,
            message_id,
            url: URL.to_owned(),
        },
        TrackingAction::Click {
            workspace_id,
            enrollment_id,
            message_id,
            url: String::new(),
        },
        TrackingAction::Unsubscribe {
            workspace_id,
            enrollment_id,
            message_id,
        },
        TrackingAction::Trap {
            workspace_id,
            enrollment_id,
            message_id,
        },
    ]
}

fn bytes_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A version 2 token as the signer made them: the code of that version, kept to show that
/// [`SIGNED_OPEN`] and [`SIGNED_CLICK`] are what it issued.
fn sign_v2(key: &[u8], action: &TrackingAction, sent_at: DateTime<Utc>) -> String {
    let (kind, url) = action.kind_and_url();
    let seconds = u32::try_from(sent_at.timestamp().max(0)).unwrap_or(u32::MAX);
    let mut bytes = vec![SIGNED_VERSION, kind, Sha256::digest(key)[0]];
    bytes.extend_from_slice(&seconds.to_be_bytes());
    bytes.extend_from_slice(action.workspace_id().as_bytes());
    bytes.extend_from_slice(action.enrollment_id().as_bytes());
    bytes.extend_from_slice(action.message_id().as_bytes());
    bytes.extend_from_slice(url.as_bytes());
    URL_SAFE_NO_PAD.encode(with_mac(key, bytes))
}

fn with_mac(key: &[u8], mut bytes: Vec<u8>) -> Vec<u8> {
    let tag = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|e| panic!("{e}"))
        .chain_update(&bytes)
        .finalize()
        .into_bytes();
    bytes.extend_from_slice(&tag[..TAG_BYTES]);
    bytes
}

#[test]
fn every_action_round_trips() -> Result<(), TokenError> {
    let signer = signer(KEY);
    for action in actions() {
        let token = signer.encode(&action, sent_at());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(bytes_of(&token)[0], VERSION, "only version 3 is issued");
        let decoded = signer.decode(&token)?;
        assert_eq!(decoded.action, action);
        assert_eq!(decoded.sent_at, sent_at());
    }
    Ok(())
}

#[test]
fn a_token_shows_none_of_the_ids_nor_the_url() {
    let signer = signer(KEY);
    let (workspace_id, enrollment_id, message_id) = ids();
    for action in actions() {
        let token = signer.encode(&action, sent_at());
        let bytes = bytes_of(&token);
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for id in [workspace_id, enrollment_id, message_id] {
            // Any 6 bytes of the id in a row; 6 consecutive bytes of random-looking ciphertext
            // match one of these by chance with odds of about 1 in 10^11.
            secrets.extend(id.as_bytes().windows(6).map(<[u8]>::to_vec));
            secrets.push(id.hyphenated().to_string().into_bytes());
            secrets.push(id.simple().to_string().into_bytes());
        }
        secrets.extend(URL.as_bytes().windows(6).map(<[u8]>::to_vec));
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|window| window == secret),
                "{action:?}: token bytes hold {secret:?}"
            );
            assert!(
                !token.as_bytes().windows(secret.len()).any(|w| w == secret),
                "{action:?}: token text holds {secret:?}"
            );
        }
        // What stays readable: the version, the key id and the send time.
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes[1], Sha256::digest(KEY)[0]);
        assert_eq!(bytes[2..6], 1_772_000_000_u32.to_be_bytes());
    }
    // The signed version showed them all, base64 away.
    let signed = bytes_of(SIGNED_CLICK);
    assert!(signed.windows(16).any(|w| w == workspace_id.as_bytes()));
    assert!(signed.windows(URL.len()).any(|w| w == URL.as_bytes()));
}

#[test]
fn tokens_are_as_long_as_documented() {
    let signer = signer(KEY);
    let (workspace_id, enrollment_id, message_id) = ids();
    let open = signer.encode(&actions()[0], sent_at());
    assert_eq!(open.len(), 95);
    assert_eq!(open.len(), SIGNED_OPEN.len(), "no longer than version 2");
    let click = signer.encode(&actions()[1], sent_at());
    assert_eq!(click.len(), SIGNED_CLICK.len(), "no longer than version 2");
    let sixty = TrackingAction::Click {
        workspace_id,
        enrollment_id,
        message_id,
        url: format!("https://example.com/{}", "x".repeat(40)),
    };
    assert_eq!(signer.encode(&sixty, sent_at()).len(), 175);
}

#[test]
fn encoding_is_deterministic() {
    let signer = signer(KEY);
    let action = &actions()[1];
    assert_eq!(
        signer.encode(action, sent_at()),
        signer.encode(action, sent_at())
    );
}

#[test]
fn flipping_any_bit_of_any_byte_is_rejected() {
    let signer = signer(KEY);
    for action in actions() {
        let token = signer.encode(&action, sent_at());
        let mut bytes = bytes_of(&token);
        for index in 0..bytes.len() {
            for bit in 0..8 {
                bytes[index] ^= 1 << bit;
                let tampered = URL_SAFE_NO_PAD.encode(&bytes);
                let result = signer.decode(&tampered);
                if index == 0 {
                    // Another version: unknown, or version 2 whose MAC fails.
                    assert!(result.is_err(), "bit {bit} of the version");
                } else {
                    assert_eq!(
                        result,
                        Err(TokenError::NotAuthentic),
                        "byte {index} bit {bit}"
                    );
                }
                bytes[index] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn changing_any_character_is_rejected() {
    let signer = signer(KEY);
    for token in [
        signer.encode(&actions()[1], sent_at()),
        SIGNED_CLICK.to_owned(),
    ] {
        for index in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
            let tampered: String = chars.into_iter().collect();
            // The last character may carry only padding bits, which a strict decoder rejects
            // as encoding errors; every other change must fail the tag.
            assert!(signer.decode(&tampered).is_err(), "character {index}");
        }
    }
}

#[test]
fn truncated_and_extended_tokens_are_rejected() {
    let signer = signer(KEY);
    for token in [
        signer.encode(&actions()[1], sent_at()),
        SIGNED_CLICK.to_owned(),
    ] {
        for len in 0..token.len() {
            assert!(signer.decode(&token[..len]).is_err(), "length {len}");
        }
        assert!(signer.decode(&format!("{token}A")).is_err());
        assert!(signer.decode(&format!("{token}AAAA")).is_err());
    }
}

#[test]
fn empty_garbage_and_huge_inputs_are_typed_errors() {
    let signer = signer(KEY);
    assert_eq!(signer.decode(""), Err(TokenError::Truncated));
    assert_eq!(signer.decode("AAAA"), Err(TokenError::Truncated));
    assert_eq!(signer.decode("not base64!"), Err(TokenError::Encoding));
    assert_eq!(signer.decode("a+b/c="), Err(TokenError::Encoding));
    assert_eq!(signer.decode("ü€𝄞"), Err(TokenError::Encoding));
    let huge = "A".repeat(10 * 1024 * 1024);
    assert_eq!(signer.decode(&huge), Err(TokenError::TooLong));
    assert_eq!(
        signer.decode(&"A".repeat(MAX_TOKEN_CHARS + 1)),
        Err(TokenError::TooLong)
    );
    let zeros = URL_SAFE_NO_PAD.encode([0_u8; MIN_TOKEN_BYTES]);
    assert_eq!(signer.decode(&zeros), Err(TokenError::UnknownVersion(0)));
    for version in [VERSION, SIGNED_VERSION] {
        let mut bytes = [0_u8; MIN_TOKEN_BYTES];
        bytes[0] = version;
        bytes[1] = Sha256::digest(KEY)[0];
        bytes[2] = Sha256::digest(KEY)[0];
        let forged = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(signer.decode(&forged), Err(TokenError::NotAuthentic));
    }
}

#[test]
fn random_inputs_are_errors_never_panics() {
    // Deterministic, so a failure reproduces: random text, random base64 of random bytes, and
    // random bytes behind a valid version and key id, of every length up to past the limit.
    let signer = signer(KEY);
    let key_id = Sha256::digest(KEY)[0];
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let alphabet: Vec<char> = ('A'..='Z')
        .chain('a'..='z')
        .chain('0'..='9')
        .chain(['-', '_', '=', '+', '/', '.', 'é', '\0'])
        .collect();
    for round in 0..3_000 {
        let chars = if round % 10 == 0 {
            rng.random_range(0..MAX_TOKEN_CHARS + 64)
        } else {
            rng.random_range(0..300)
        };
        let text: String = (0..chars)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        assert!(signer.decode(&text).is_err(), "text {text:?}");

        let mut bytes: Vec<u8> = (0..chars * 3 / 4).map(|_| rng.random()).collect();
        assert!(
            signer.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err(),
            "bytes {bytes:?}"
        );
        if bytes.len() > 3 {
            bytes[0] = if round % 2 == 0 {
                VERSION
            } else {
                SIGNED_VERSION
            };
            bytes[1] = key_id;
            bytes[2] = key_id;
            assert!(
                signer.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err(),
                "bytes {bytes:?}"
            );
        }
    }
}

#[test]
fn the_longest_url_round_trips() -> Result<(), TokenError> {
    let signer = signer(KEY);
    let (workspace_id, enrollment_id, message_id) = ids();
    let action = TrackingAction::Click {
        workspace_id,
        enrollment_id,
        message_id,
        url: format!("https://example.com/{}", "x".repeat(MAX_URL_BYTES - 20)),
    };
    let token = signer.encode(&action, sent_at());
    assert!(token.len() <= MAX_TOKEN_CHARS);
    assert_eq!(signer.decode(&token)?.action, action);
    Ok(())
}

#[test]
fn a_token_of_another_key_is_rejected() {
    let token = signer(OTHER_KEY).encode(&actions()[0], sent_at());
    assert_eq!(signer(KEY).decode(&token), Err(TokenError::NotAuthentic));
    // Relabelled with the id of a listed key, it still does not open.
    let mut bytes = bytes_of(&token);
    bytes[1] = Sha256::digest(KEY)[0];
    assert_eq!(
        signer(KEY).decode(&URL_SAFE_NO_PAD.encode(&bytes)),
        Err(TokenError::NotAuthentic)
    );
}

#[test]
fn rotation_seals_with_the_primary_and_opens_with_older_keys() -> Result<(), TokenError> {
    let rotated = TokenSigner::with_keys(OTHER_KEY, &[KEY]).unwrap_or_else(|e| panic!("{e}"));
    let action = &actions()[3];
    let old_token = signer(KEY).encode(action, sent_at());
    assert_eq!(rotated.decode(&old_token)?.action, *action);
    let new_token = rotated.encode(action, sent_at());
    assert_eq!(new_token, signer(OTHER_KEY).encode(action, sent_at()));
    assert_eq!(
        signer(KEY).decode(&new_token),
        Err(TokenError::NotAuthentic)
    );
    // Once the old key is removed from the list, its tokens stop opening.
    assert_eq!(
        signer(OTHER_KEY).decode(&old_token),
        Err(TokenError::NotAuthentic)
    );
    Ok(())
}

#[test]
fn the_cipher_key_is_derived_not_the_configured_key() {
    // Sealing under the configured key itself must not produce the tokens: the AEAD key is
    // HKDF's, so the HMACs keyed with the configured key (version 2, client addresses) never
    // share a key with the cipher.
    let raw = Aes256GcmSiv::new_from_slice(KEY).unwrap_or_else(|e| panic!("{e}"));
    let token = signer(KEY).encode(&actions()[0], sent_at());
    let bytes = bytes_of(&token);
    let (clear, rest) = bytes
        .split_first_chunk::<CLEAR_BYTES>()
        .unwrap_or_else(|| panic!());
    let (sealed, tag) = rest.split_at(rest.len() - TAG_BYTES);
    let mut buffer = sealed.to_vec();
    let tag = Tag::clone_from_slice(tag);
    assert!(
        raw.decrypt_in_place_detached(&nonce(clear), &[], &mut buffer, &tag)
            .is_err()
    );
}

#[test]
fn version_2_tokens_of_delivered_emails_still_verify() -> Result<(), TokenError> {
    let signer = signer(KEY);
    assert_eq!(sign_v2(KEY, &actions()[0], sent_at()), SIGNED_OPEN);
    assert_eq!(sign_v2(KEY, &actions()[1], sent_at()), SIGNED_CLICK);
    for action in actions() {
        let token = sign_v2(KEY, &action, sent_at());
        let decoded = signer.decode(&token)?;
        assert_eq!(decoded.action, action);
        assert_eq!(decoded.sent_at, sent_at());
        assert_ne!(signer.encode(&action, sent_at()), token, "never issued");
    }
    // An older listed key verifies its version 2 tokens too; a removed or other key does not.
    let rotated = TokenSigner::with_keys(OTHER_KEY, &[KEY]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rotated.decode(SIGNED_CLICK)?.action, actions()[1]);
    assert_eq!(
        self::signer(OTHER_KEY).decode(SIGNED_CLICK),
        Err(TokenError::NotAuthentic)
    );
    let mut bytes = bytes_of(SIGNED_OPEN);
    for index in 0..bytes.len() {
        for bit in 0..8 {
            bytes[index] ^= 1 << bit;
            assert!(
                signer.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err(),
                "byte {index} bit {bit}"
            );
            bytes[index] ^= 1 << bit;
        }
    }
    Ok(())
}

#[test]
fn short_keys_are_refused() {
    assert_eq!(
        TokenSigner::new(b"short").err(),
        Some(KeyError::TooShort(5))
    );
    assert!(TokenSigner::with_keys(KEY, &[b""]).is_err());
}

#[test]
fn sealed_but_unknown_payloads_are_typed_errors() {
    // Payloads only a key holder could make: an unknown kind, an open with trailing bytes, a
    // click with a URL that is not UTF-8, a payload too short for its ids.
    let signer = signer(KEY);
    let seal = |payload: &[u8]| signer.primary.seal(1_772_000_000, payload.to_vec());
    let mut payload = vec![0_u8; SEALED_BYTES];
    payload[0] = 9;
    assert_eq!(
        signer.decode(&seal(&payload)),
        Err(TokenError::UnknownKind(9))
    );
    payload[0] = KIND_OPEN;
    payload.push(b'x');
    assert_eq!(signer.decode(&seal(&payload)), Err(TokenError::Malformed));
    payload[0] = KIND_CLICK;
    payload.push(0xFF);
    assert_eq!(signer.decode(&seal(&payload)), Err(TokenError::Malformed));
    // Too short overall is refused before any work; the shortest well-formed length opens.
    assert_eq!(
        signer.decode(&seal(&payload[..SEALED_BYTES - 1])),
        Err(TokenError::Truncated)
    );
    payload.truncate(SEALED_BYTES);
    payload[0] = KIND_TRAP;
    assert!(matches!(
        signer.decode(&seal(&payload)),
        Ok(Token {
            action: TrackingAction::Trap { .. },
            ..
        })
    ));
}

#[test]
fn signed_but_unknown_payloads_are_typed_errors() {
    // Version 2 payloads only a key holder could have made: an unknown kind, an open with
    // trailing bytes, a click with a URL that is not UTF-8.
    let sign = |payload: &[u8]| URL_SAFE_NO_PAD.encode(with_mac(KEY, payload.to_vec()));
    let signer = signer(KEY);
    let mut payload = vec![0_u8; SIGNED_HEADER_BYTES];
    payload[0] = SIGNED_VERSION;
    payload[2] = Sha256::digest(KEY)[0];
    payload[1] = 9;
    assert_eq!(
        signer.decode(&sign(&payload)),
        Err(TokenError::UnknownKind(9))
    );
    payload[1] = KIND_OPEN;
    payload.push(b'x');
    assert_eq!(signer.decode(&sign(&payload)), Err(TokenError::Malformed));
    payload[1] = KIND_CLICK;
    payload.push(0xFF);
    assert_eq!(signer.decode(&sign(&payload)), Err(TokenError::Malformed));
}

#[test]
fn debug_does_not_print_keys() {
    let printed = format!("{:?}", signer(KEY));
    assert!(!printed.contains("0123"), "{printed}");
}

#[test]
fn times_outside_the_field_are_clamped_not_wrapped() -> Result<(), TokenError> {
    let signer = signer(KEY);
    let before_epoch = DateTime::from_timestamp(-5, 0).unwrap_or_else(|| panic!("valid time"));
    let token = signer.encode(&actions()[0], before_epoch);
    assert_eq!(signer.decode(&token)?.sent_at.timestamp(), 0);
    let after_2106 =
        DateTime::from_timestamp(i64::from(u32::MAX) + 5, 0).unwrap_or_else(|| panic!("valid"));
    let token = signer.encode(&actions()[0], after_2106);
    assert_eq!(
        signer.decode(&token)?.sent_at.timestamp(),
        i64::from(u32::MAX)
    );
    Ok(())
}
