//! Text that people type, compared as people read it. Vietnamese can be typed precomposed (NFC: "ở" as one
//! character) or decomposed (NFD: "o", the horn, the hook above, as Unikey's "Unicode tổ hợp" types it); both
//! look the same and must be the same name. Every comparison of names goes through here. What is stored keeps
//! the bytes that were sent (canonical bytes are what the audit tree hashes); only comparisons normalise.

use std::borrow::Cow;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// `s` in Unicode normalisation form C, borrowed when it already is.
pub fn nfc(s: &str) -> Cow<'_, str> {
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => Cow::Borrowed(s),
        _ => Cow::Owned(s.nfc().collect()),
    }
}

/// Whether two texts are the same once normalised (NFC): the same name, however it was typed.
pub fn same_text(a: &str, b: &str) -> bool {
    a == b || nfc(a) == nfc(b)
}

/// The key a name is looked up by: NFC, lower case, runs of whitespace as one space, trimmed. "Sở Tư pháp",
/// "sở  tư pháp " and the same typed decomposed have one key.
pub fn name_key(s: &str) -> String {
    nfc(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text, decomposed or composed, has the key and the sameness of its NFC form.
        #[test]
        fn a_name_typed_decomposed_is_the_same_name(s in "[a-zA-ZàáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵĐƠƯ ,()]{0,40}") {
            let decomposed: String = s.nfd().collect();
            prop_assert!(same_text(&s, &decomposed));
            prop_assert_eq!(name_key(&s), name_key(&decomposed));
            prop_assert_eq!(nfc(&decomposed).into_owned(), s.nfc().collect::<String>());
        }
    }
}
