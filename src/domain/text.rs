//! The one rule every free-text field obeys (names, creative text, reasons, chat text, cities):
//! no control characters and no bidirectional formatting characters. The text reaches users'
//! screens, advertisers' consoles, logs and CSV exports; a control character (NUL, ESC
//! sequences, line breaks) can corrupt or forge what those show, and a bidi override can make
//! an ad or a name read differently from what was moderated. Every field is one line: line
//! breaks (`\n`, `\r`, U+2028, U+2029) are refused too, in a creative's body as elsewhere. The
//! body is a 125-character caption drawn over someone's Status by apps this service does not
//! control; line breaks would let an ad choose its own height and push the "Sponsored" label or
//! the button around, and the length limit would no longer bound the space it takes.

use super::ValidationError;
use crate::codes::Code;

/// Checks `value` of the field named `field` (as the API names it); refusals carry `code`, the
/// field's own validation code.
pub fn check_one_line(field: &str, value: &str, code: Code) -> Result<(), ValidationError> {
    match value.chars().enumerate().find(|(_, c)| refused(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(ValidationError::new(
            code,
            format!(
                "{field} must not contain control, line-break or bidirectional formatting \
                 characters (found U+{:04X} at character {})",
                c as u32,
                at + 1
            ),
        )),
    }
}

fn refused(c: char) -> bool {
    // `is_control` is exactly Unicode category Cc (C0, DEL and C1).
    c.is_control()
        || matches!(
            c,
            // Embeddings and overrides (LRE, RLE, PDF, LRO, RLO), isolates (LRI, RLI, FSI, PDI).
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators.
            | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    #[test]
    fn refuses_controls_line_breaks_and_bidi_overrides() {
        for bad in [
            "a\u{0}b",
            "a\u{1b}[31m",
            "a\nb",
            "a\r",
            "\tx",
            "a\u{7f}",
            "a\u{85}",
            "a\u{9b}",
            "a\u{202a}",
            "a\u{202e}b",
            "a\u{2066}",
            "a\u{2069}",
            "a\u{2028}",
        ] {
            let err = check_one_line("headline", bad, codes::INVALID_TEXT).unwrap_err();
            assert_eq!(err.code, "invalid_text", "{bad:?}");
            assert!(err.message.starts_with("headline "), "{}", err.message);
        }
        assert!(check_one_line("name", "Pizza\u{202e}", codes::INVALID_NAME)
            .unwrap_err()
            .message
            .contains("U+202E at character 6"));
    }

    #[test]
    fn keeps_ordinary_text_of_every_script() {
        for good in [
            "Pizzeria Roma",
            "Caffè & Co. — 20% off!",
            "مطعم بيتزا",
            "שלום\u{200f} עולם",
            "ピザ 🍕",
            "Zero\u{200d}width joiner in 👩\u{200d}🍳",
            "",
        ] {
            assert!(
                check_one_line("name", good, codes::INVALID_NAME).is_ok(),
                "{good:?}"
            );
        }
    }
}
