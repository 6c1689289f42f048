//! The fixed bodies the tracker answers with: the pixel and the unsubscribe pages. None of
//! them repeats anything from the request (no token, no address), so none needs escaping.

/// A 1x1 transparent GIF89a, 43 bytes.
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, // GIF89a
    0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, // 1x1, global colour table of 2
    0x00, 0x00, 0x00, 0xff, 0xff, 0xff, // black, white
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, // graphic control: colour 0 transparent
    0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, // image descriptor
    0x02, 0x02, 0x44, 0x01, 0x00, // LZW data
    0x3b, // trailer
];

/// The body RFC 8058 one-click unsubscribe POSTs carry.
pub const ONE_CLICK_FIELD: (&str, &str) = ("List-Unsubscribe", "One-Click");

/// Shown on GET: a GET must never unsubscribe (mail software and scanners prefetch links), so
/// the button posts the RFC 8058 body to the same URL.
pub const CONFIRM_UNSUBSCRIBE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto; text-align: center">
<h1>Unsubscribe</h1>
<p>Stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>
</body></html>
"#;

/// Answer to the POST.
pub const UNSUBSCRIBED: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribed</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto; text-align: center">
<h1>You are unsubscribed</h1>
<p>You will not receive further emails of this sequence.</p>
</body></html>
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn pixel_is_a_43_byte_gif() {
        assert_eq!(super::PIXEL_GIF.len(), 43);
        assert!(super::PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(super::PIXEL_GIF.last(), Some(&0x3b));
    }
}
