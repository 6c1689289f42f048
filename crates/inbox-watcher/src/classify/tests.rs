// Tests may panic on purpose: that is how they fail.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn bounces(inbound: &Inbound) -> &[Bounce] {
    match &inbound.kind {
        Kind::Bounce(list) => list,
        other => panic!("expected a bounce, got {other:?}"),
    }
}

fn auto_reason(inbound: &Inbound) -> &str {
    match &inbound.kind {
        Kind::AutoReply { reason } => reason,
        other => panic!("expected an auto-reply, got {other:?}"),
    }
}

// --- personal replies ---------------------------------------------------------------------------

#[test]
fn gmail_reply_is_personal_with_ordered_references() {
    let inbound = classify(include_bytes!("fixtures/gmail_reply.eml"));
    assert_eq!(inbound.kind, Kind::Personal);
    assert_eq!(
        inbound.message_id.as_deref(),
        Some("<CAF3xYz+Qm8d1E_pL2vN9=kQ7@mail.gmail.com>")
    );
    assert_eq!(inbound.from.as_deref(), Some("john.prospect@gmail.com"));
    assert_eq!(
        inbound.subject.as_deref(),
        Some("Re: Quick question about your Q4 pipeline – Acme")
    );
    assert_eq!(
        inbound.references,
        vec![
            "<0192f1c2-bbbb-7000-8000-000000000002@example.com>".to_string(),
            "<0192f1c0-aaaa-7000-8000-000000000001@example.com>".to_string(),
        ]
    );
}

#[test]
fn outlook_reply_with_encoded_subject_is_personal() {
    let inbound = classify(include_bytes!("fixtures/outlook_reply_encoded_subject.eml"));
    assert_eq!(inbound.kind, Kind::Personal);
    assert_eq!(
        inbound.subject.as_deref(),
        Some("AW: Angebot für Ihre Vertriebsteams")
    );
    assert_eq!(
        inbound.from.as_deref(),
        Some("juergen.mueller@beispiel-gmbh.de")
    );
    // Folded Message-ID (value on the continuation line) is still read.
    assert_eq!(
        inbound.message_id.as_deref(),
        Some("<FR2P281MB1234A1B2C3D4E5F6A7B8C9D0E1F2A@FR2P281MB1234.DEUP281.PROD.OUTLOOK.COM>")
    );
    assert_eq!(
        inbound.references,
        vec!["<0192f1c2-cccc-7000-8000-000000000003@example.com>".to_string()]
    );
    assert_eq!(
        thread_subject(inbound.subject.as_deref().unwrap_or_default()),
        "angebot für ihre vertriebsteams"
    );
}

#[test]
fn references_deduplicate_in_reply_to_and_skip_invalid_ids() {
    let raw = b"From: a@b.example\r\n\
In-Reply-To: <c@x> (sent by a client that adds comments)\r\n\
References: <a@x>\r\n <b@x>\r\n <c@x>\r\n\
Subject: Re: hi\r\n\r\nbody\r\n";
    let inbound = classify(raw);
    assert_eq!(inbound.references, vec!["<c@x>", "<b@x>", "<a@x>"]);
    assert_eq!(inbound.kind, Kind::Personal);
}

#[test]
fn plain_personal_message_without_auto_signals() {
    let raw = b"From: \"Zoe\" <ZOE@Startup.IO>\nTo: anna.seller@example.com\n\
Subject: Absences policy question\nMessage-ID: <z1@startup.io>\n\nHi Anna, quick one.\n";
    let inbound = classify(raw);
    // "Absence" only counts as a whole word.
    assert_eq!(inbound.kind, Kind::Personal);
    assert_eq!(inbound.from.as_deref(), Some("zoe@startup.io"));
    assert_eq!(inbound.message_id.as_deref(), Some("<z1@startup.io>"));
}

// --- automatic replies --------------------------------------------------------------------------

#[test]
fn gmail_out_of_office_uses_auto_submitted() {
    let inbound = classify(include_bytes!("fixtures/gmail_out_of_office.eml"));
    assert_eq!(auto_reason(&inbound), "Auto-Submitted: auto-replied");
    assert_eq!(inbound.from.as_deref(), Some("maria.lopez@gmail.com"));
    assert_eq!(
        inbound.references,
        vec!["<0192f1c2-dddd-7000-8000-000000000004@example.com>".to_string()]
    );
}

#[test]
fn outlook_automatic_reply_uses_suppress_header_and_subject() {
    let inbound = classify(include_bytes!("fixtures/outlook_automatic_reply.eml"));
    assert_eq!(
        auto_reason(&inbound),
        "X-Auto-Response-Suppress + subject: Automatic reply"
    );
    assert_eq!(
        inbound.references,
        vec!["<0192f1c2-eeee-7000-8000-000000000005@example.com>".to_string()]
    );
}

#[test]
fn x_autoreply_header() {
    let inbound = classify(include_bytes!("fixtures/autoreply_header.eml"));
    assert_eq!(auto_reason(&inbound), "X-Autoreply");
}

#[test]
fn german_subject_only() {
    let inbound = classify(include_bytes!("fixtures/german_abwesenheit.eml"));
    assert_eq!(auto_reason(&inbound), "subject: Abwesenheitsnotiz");
    assert_eq!(inbound.from.as_deref(), Some("s.schmidt@firma.example.de"));
}

#[test]
fn precedence_bulk() {
    let inbound = classify(include_bytes!("fixtures/precedence_bulk.eml"));
    assert_eq!(auto_reason(&inbound), "Precedence: bulk");
}

#[test]
fn auto_submitted_no_is_not_automatic() {
    let raw = b"From: a@b.example\nAuto-Submitted: no\nSubject: Re: pricing\n\nReal answer.\n";
    assert_eq!(classify(raw).kind, Kind::Personal);
}

#[test]
fn other_auto_headers_and_subjects() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"From: a@b.example\nAuto-Submitted: Auto-Generated; owner-email=x@y\n\nx\n",
            "Auto-Submitted: auto-generated",
        ),
        (
            b"From: a@b.example\nX-Autorespond: 1\n\nx\n",
            "X-Autorespond",
        ),
        (
            b"From: a@b.example\nX-Precedence: junk\n\nx\n",
            "X-Precedence: junk",
        ),
        (
            b"From: a@b.example\nPrecedence: List\n\nx\n",
            "Precedence: list",
        ),
        (
            b"Return-Path: <>\nFrom: noreply@b.example\nSubject: Thanks\n\nx\n",
            "Return-Path: <>",
        ),
        (
            "From: a@b.example\nSubject: Réponse automatique : Votre message\n\nx\n".as_bytes(),
            "subject: Réponse automatique",
        ),
        (
            b"From: a@b.example\nSubject: =?utf-8?Q?Respuesta_autom=C3=A1tica?=\n\nx\n",
            "subject: Respuesta automática",
        ),
        (
            b"From: a@b.example\nSubject: AUTO: Jan is out\n\nx\n",
            "subject: Auto:",
        ),
        (
            b"From: a@b.example\nSubject: Re: Intro [Autosvar]\n\nx\n",
            "subject: Autosvar",
        ),
        (
            b"From: a@b.example\nAuto-Submitted: auto-replied (vacation)\n\nx\n",
            "Auto-Submitted: auto-replied",
        ),
        (
            b"From: a@b.example\nSubject: Read: Intro\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=r\n\n\
--r\nContent-Type: text/plain\n\nYour message was read.\n--r\n\
Content-Type: message/disposition-notification\n\n\
Final-Recipient: rfc822; a@b.example\nDisposition: manual-action/MDN-sent-manually; displayed\n\
--r--\n",
            "read receipt",
        ),
    ];
    for (raw, reason) in cases {
        let inbound = classify(raw);
        assert_eq!(
            auto_reason(&inbound),
            *reason,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

// --- standard DSNs (RFC 3464 / RFC 6533) --------------------------------------------------------

#[test]
fn postfix_dsn_hard() {
    let inbound = classify(include_bytes!("fixtures/postfix_dsn_hard.eml"));
    assert_eq!(
        inbound.from.as_deref(),
        Some("mailer-daemon@mail.example.com")
    );
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("nobody@example.org".into()),
            hard: true,
            status: Some("5.1.1".into()),
            diagnostic: Some(
                "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown".into()
            ),
            original_message_id: Some("<0192f1c2-1111-7000-8000-000000000010@example.com>".into()),
        }]
    );
}

#[test]
fn dsn_delayed_is_soft() {
    let inbound = classify(include_bytes!("fixtures/dsn_delayed_soft.eml"));
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("slow@busy.example.net".into()),
            hard: false,
            status: Some("4.4.1".into()),
            diagnostic: Some(
                "connect to mx.busy.example.net[192.0.2.44]:25: Connection timed out".into()
            ),
            original_message_id: Some("<0192f1c2-2222-7000-8000-000000000011@example.com>".into()),
        }]
    );
}

#[test]
fn dsn_two_recipients_reports_only_the_failure() {
    let inbound = classify(include_bytes!("fixtures/dsn_two_recipients.eml"));
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("gone@bad.example".into()),
            hard: true,
            status: Some("5.2.1".into()),
            diagnostic: Some("550 5.2.1 Mailbox disabled, not accepting messages".into()),
            original_message_id: Some("<0192f1c2-3333-7000-8000-000000000012@example.com>".into()),
        }]
    );
}

#[test]
fn exchange_ndr_takes_original_id_from_attached_message() {
    let inbound = classify(include_bytes!("fixtures/exchange_ndr.eml"));
    assert_eq!(
        inbound.subject.as_deref(),
        Some("Undeliverable: Quick question about your Q4 pipeline")
    );
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("former.employee@contoso.com".into()),
            hard: true,
            status: Some("5.1.10".into()),
            diagnostic: Some(
                "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address \
                 lookup"
                    .into()
            ),
            // The attached original wins over the NDR's own In-Reply-To.
            original_message_id: Some("<0192f1c2-5555-7000-8000-000000000014@example.com>".into()),
        }]
    );
    assert_eq!(
        inbound.references,
        vec!["<0192f1c2-4444-7000-8000-000000000013@example.com>".to_string()]
    );
}

#[test]
fn delivered_report_is_not_a_bounce() {
    let inbound = classify(include_bytes!("fixtures/delivered_report.eml"));
    assert_eq!(
        inbound.kind,
        Kind::Ignored {
            reason: "delivery report".to_string()
        }
    );
}

#[test]
fn a_feedback_report_is_a_complaint_about_the_reported_message() {
    let inbound = classify(include_bytes!("fixtures/arf_abuse.eml"));
    assert_eq!(
        inbound.kind,
        Kind::Complaint(Complaint {
            feedback_type: Some("abuse".to_string()),
            recipient: Some("prospect@example.net".to_string()),
            original_message_id: Some(
                "<0192f1c2-3b4d-7e5f-8a9b-0c1d2e3f4a5b@sales.example.com>".to_string()
            ),
        })
    );
}

#[test]
fn a_not_spam_feedback_report_is_ignored() {
    let raw = String::from_utf8_lossy(include_bytes!("fixtures/arf_abuse.eml"))
        .replace("Feedback-Type: abuse", "Feedback-Type: not-spam");
    let inbound = classify(raw.as_bytes());
    assert_eq!(
        inbound.kind,
        Kind::Ignored {
            reason: "feedback report: not-spam".to_string()
        }
    );
}

#[test]
fn global_delivery_status_rfc6533() {
    let inbound = classify(include_bytes!("fixtures/global_dsn.eml"));
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("田中@例え.jp".into()),
            hard: true,
            status: Some("5.1.1".into()),
            diagnostic: Some("550 5.1.1 unknown user".into()),
            original_message_id: Some("<0192f1c2-8888-7000-8000-000000000017@example.com>".into()),
        }]
    );
}

#[test]
fn dsn_action_failed_without_status_is_hard() {
    let raw = b"From: MAILER-DAEMON@x.example\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; x.example\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n\n--b--\n";
    let inbound = classify(raw);
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("a@b.example".into()),
            hard: true,
            status: None,
            diagnostic: None,
            original_message_id: None,
        }]
    );
}

// --- non-standard bounces -----------------------------------------------------------------------

#[test]
fn gmail_nonstandard_bounce_is_hard() {
    let inbound = classify(include_bytes!("fixtures/gmail_nonstandard_bounce.eml"));
    let list = bounces(&inbound);
    assert_eq!(list.len(), 1);
    let bounce = &list[0];
    assert_eq!(bounce.recipient.as_deref(), Some("x@y.com"));
    assert!(bounce.hard);
    assert_eq!(bounce.status.as_deref(), Some("5.1.1"));
    let diagnostic = bounce.diagnostic.as_deref().unwrap_or_default();
    assert!(
        diagnostic
            .starts_with("550 5.1.1 The email account that you tried to reach does not exist"),
        "{diagnostic}"
    );
    assert!(diagnostic.chars().count() <= 500);
    assert_eq!(bounce.original_message_id, None);
}

#[test]
fn exim_temporary_failure_is_soft() {
    let inbound = classify(include_bytes!("fixtures/exim_soft.eml"));
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("busy@overloaded.example".into()),
            hard: false,
            status: Some("4.3.0".into()),
            diagnostic: Some("451 4.3.0 temporary local problem, please try again later".into()),
            original_message_id: None,
        }]
    );
}

#[test]
fn original_message_id_from_text_body() {
    let inbound = classify(include_bytes!("fixtures/text_message_id_bounce.eml"));
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("left.company@oldmail.example".into()),
            hard: true,
            status: Some("5.1.1".into()),
            diagnostic: Some("554 sorry, no mailbox here by that name. (#5.1.1)".into()),
            original_message_id: Some("<0192f1c2-6666-7000-8000-000000000015@example.com>".into()),
        }]
    );
}

#[test]
fn bounce_signal_without_code_is_not_a_bounce() {
    let raw = b"From: postmaster@corp.example\nTo: anna.seller@example.com\n\
Subject: Re: your question\n\nHi Anna, I run the mail server here, happy to talk.\n";
    assert_eq!(classify(raw).kind, Kind::Personal);
}

#[test]
fn nonstandard_bounce_falls_back_to_references_and_text_recipient() {
    let raw = b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\n\
To: anna.seller@example.com\nSubject: Returned mail: see transcript for details\n\
In-Reply-To: <ours-1@example.com>\n\n\
----- The following addresses had permanent fatal errors -----\n\
<Who@Gone.Example>\n    (reason: 550 Requested action not taken: mailbox unavailable)\n";
    let inbound = classify(raw);
    assert_eq!(
        bounces(&inbound),
        [Bounce {
            recipient: Some("who@gone.example".into()),
            hard: true,
            status: None,
            diagnostic: Some(
                "(reason: 550 Requested action not taken: mailbox unavailable)".into()
            ),
            original_message_id: Some("<ours-1@example.com>".into()),
        }]
    );
}

#[test]
fn multiple_failed_recipients_give_one_entry_each() {
    let raw = b"From: Mailer-Daemon@h.example\nX-Failed-Recipients: a@x.example, B@y.example\n\
Subject: Mail delivery failed\n\n  550 5.1.1 no such users\n";
    let list = classify(raw);
    let recipients: Vec<_> = bounces(&list)
        .iter()
        .map(|b| b.recipient.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(recipients, ["a@x.example", "b@y.example"]);
    assert!(bounces(&list).iter().all(|b| b.hard));
}

#[test]
fn long_diagnostic_is_truncated_to_500_chars() {
    let long = "x".repeat(2000);
    let raw = format!(
        "From: MAILER-DAEMON@x.example\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\n\
Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.0.0\n\
Diagnostic-Code: smtp; 550 {long}\n\n--b--\n"
    );
    let inbound = classify(raw.as_bytes());
    let diagnostic = bounces(&inbound)[0].diagnostic.clone().unwrap_or_default();
    assert_eq!(diagnostic.chars().count(), 500);
    assert!(diagnostic.starts_with("550 xxx"));
}

// --- code scanners ------------------------------------------------------------------------------

#[test]
fn status_code_scanners_ignore_ip_addresses_and_numbers() {
    assert_eq!(
        first_enhanced_code("host [192.0.2.44] said", &['4', '5']),
        None
    );
    assert_eq!(first_enhanced_code("version 1.5.1.1", &['4', '5']), None);
    assert_eq!(
        first_enhanced_code("550-5.7.26 unauthenticated", &['4', '5']).as_deref(),
        Some("5.7.26")
    );
    assert_eq!(smtp_reply_class("550-5.7.26 unauthenticated"), Some('5'));
    assert_eq!(smtp_reply_class("call +1 555-1234"), None);
    assert_eq!(smtp_reply_class("after 4500 tries"), None);
    assert_eq!(smtp_reply_class("said: 421 try later"), Some('4'));
}

// --- robustness ---------------------------------------------------------------------------------

#[test]
fn garbage_and_empty_input_are_personal() {
    for raw in [
        &b""[..],
        b"\xff\xfe not a mail",
        b"\r\n\r\n",
        b":::\n\n\x00\x01",
    ] {
        let inbound = classify(raw);
        assert_eq!(inbound.kind, Kind::Personal, "{raw:?}");
        assert_eq!(inbound.message_id, None);
        assert!(inbound.references.is_empty());
    }
}

#[test]
fn truncated_bounce_does_not_panic() {
    let full = include_bytes!("fixtures/postfix_dsn_hard.eml");
    for len in (0..full.len()).step_by(7) {
        let _ = classify(&full[..len]);
    }
    let full = include_bytes!("fixtures/exchange_ndr.eml");
    for len in (0..full.len()).step_by(11) {
        let _ = classify(&full[..len]);
    }
}

#[test]
fn truncated_report_without_status_part_uses_text() {
    let full = include_bytes!("fixtures/postfix_dsn_hard.eml");
    let text = String::from_utf8_lossy(full);
    let cut = text
        .find("Content-Description: Delivery report")
        .unwrap_or(text.len());
    let inbound = classify(&full[..cut]);
    let list = bounces(&inbound);
    assert_eq!(list.len(), 1);
    assert!(list[0].hard);
    assert_eq!(list[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(list[0].recipient.as_deref(), Some("nobody@example.org"));
}

// --- helpers ------------------------------------------------------------------------------------

#[test]
fn thread_subject_table() {
    let cases = [
        ("Re: RE: Fwd: Hello  World", "hello world"),
        ("AW: WG: Angebot", "angebot"),
        ("Re[2]: x", "x"),
        ("[EXTERNAL] Re: Quick question", "quick question"),
        ("Réf. : Proposition", "proposition"),
        ("", ""),
        ("FW: Fw: SV: VS: Antw: RIF: status", "status"),
        ("Re: Re: Re:   spaced\tout ", "spaced out"),
        ("RE : French spacing", "french spacing"),
        ("Re(3): counter", "counter"),
        ("Reply needed", "reply needed"),
        ("Return policy", "return policy"),
        ("[list] [EXT] AW: Termin", "termin"),
        (
            "Quick question about your Q4 pipeline",
            "quick question about your q4 pipeline",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(thread_subject(input), expected, "{input:?}");
    }
}

#[test]
fn normalize_message_id_cases() {
    let cases = [
        ("<a@b>", Some("<a@b>")),
        ("  <a@b>  ", Some("<a@b>")),
        ("a@b", Some("<a@b>")),
        ("<<a@b>>", Some("<a@b>")),
        ("<a@b> (comment)", Some("<a@b>")),
        ("(comment) <a@b>", Some("<a@b>")),
        (
            "<0192f1c2-0000@example.com>",
            Some("<0192f1c2-0000@example.com>"),
        ),
        ("", None),
        ("   ", None),
        ("<>", None),
        ("< >", None),
        ("<a b@c>", None),
        ("<a@b> <c@d>", None),
        ("(only a comment)", None),
    ];
    for (input, expected) in cases {
        assert_eq!(
            normalize_message_id(input).as_deref(),
            expected,
            "{input:?}"
        );
    }
}

#[test]
fn mutated_fixtures_do_not_panic() {
    let fixtures: &[&[u8]] = &[
        include_bytes!("fixtures/gmail_reply.eml"),
        include_bytes!("fixtures/outlook_reply_encoded_subject.eml"),
        include_bytes!("fixtures/postfix_dsn_hard.eml"),
        include_bytes!("fixtures/exchange_ndr.eml"),
        include_bytes!("fixtures/gmail_nonstandard_bounce.eml"),
        include_bytes!("fixtures/global_dsn.eml"),
        include_bytes!("fixtures/text_message_id_bounce.eml"),
    ];
    // Deterministic xorshift so a failure is reproducible.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = [
        b'<', b'>', b'@', b':', b';', b'\n', b' ', b'.', b'5', 0xff, 0xc3,
    ];
    for fixture in fixtures {
        for _ in 0..200 {
            let mut bytes = fixture.to_vec();
            for _ in 0..8 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = interesting[(next() as usize) % interesting.len()];
            }
            let _ = classify(&bytes);
        }
    }
}
