use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

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
            url: "https://example.com/pricing?a=1&b=é#top".to_owned(),
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
        let decoded = signer.decode(&token)?;
        assert_eq!(decoded.action, action);
        assert_eq!(decoded.sent_at, sent_at());
    }
    Ok(())
}

#[test]
fn open_tokens_are_95_characters_as_documented() {
    let token = signer(KEY).encode(&actions()[0], sent_at());
    assert_eq!(token.len(), 95);
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
        let mut bytes = URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap_or_else(|e| panic!("{e}"));
        for index in 0..bytes.len() {
            for bit in 0..8 {
                bytes[index] ^= 1 << bit;
                let tampered = URL_SAFE_NO_PAD.encode(&bytes);
                assert_eq!(
                    signer.decode(&tampered),
                    Err(TokenError::BadSignature),
                    "byte {index} bit {bit}"
                );
                bytes[index] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn changing_any_character_is_rejected() {
    let signer = signer(KEY);
    let token = signer.encode(&actions()[1], sent_at());
    for index in 0..token.len() {
        let mut chars: Vec<char> = token.chars().collect();
        chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        // The last character may carry only padding bits, which a strict decoder rejects as
        // encoding errors; every other change must fail the signature.
        assert!(signer.decode(&tampered).is_err(), "character {index}");
    }
}

#[test]
fn truncated_and_extended_tokens_are_rejected() {
    let signer = signer(KEY);
    let token = signer.encode(&actions()[1], sent_at());
    for len in 0..token.len() {
        assert!(signer.decode(&token[..len]).is_err(), "length {len}");
    }
    assert!(signer.decode(&format!("{token}A")).is_err());
    assert!(signer.decode(&format!("{token}AAAA")).is_err());
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
    let zeros = URL_SAFE_NO_PAD.encode([0_u8; HEADER_BYTES + TAG_BYTES]);
    assert_eq!(signer.decode(&zeros), Err(TokenError::BadSignature));
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
    assert_eq!(signer(KEY).decode(&token), Err(TokenError::BadSignature));
}

#[test]
fn rotation_signs_with_the_primary_and_accepts_older_keys() -> Result<(), TokenError> {
    let rotated = TokenSigner::with_keys(OTHER_KEY, &[KEY]).unwrap_or_else(|e| panic!("{e}"));
    let action = &actions()[3];
    let old_token = signer(KEY).encode(action, sent_at());
    assert_eq!(rotated.decode(&old_token)?.action, *action);
    let new_token = rotated.encode(action, sent_at());
    assert_eq!(new_token, signer(OTHER_KEY).encode(action, sent_at()));
    assert_eq!(
        signer(KEY).decode(&new_token),
        Err(TokenError::BadSignature)
    );
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
fn signed_but_unknown_payloads_are_typed_errors() {
    // Payloads only a key holder could make: a future version, an unknown kind, an open with
    // trailing bytes, a click with a URL that is not UTF-8.
    let sign = |payload: &[u8]| {
        let mut bytes = payload.to_vec();
        let tag = HmacSha256::new_from_slice(KEY)
            .unwrap_or_else(|e| panic!("{e}"))
            .chain_update(payload)
            .finalize()
            .into_bytes();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let signer = signer(KEY);
    let mut payload = vec![0_u8; HEADER_BYTES];
    payload[2] = Sha256::digest(KEY)[0];
    payload[0] = 3;
    assert_eq!(
        signer.decode(&sign(&payload)),
        Err(TokenError::UnknownVersion(3))
    );
    payload[0] = VERSION;
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
    Ok(())
}
