//! The form text is compared in, for keywords and messages alike.

use unicode_normalization::UnicodeNormalization;

/// The form text is compared in: Unicode NFKC (full-width "ＶＩＰ" becomes "VIP"), lower case,
/// surrounding white space removed.
pub fn normalize(text: &str) -> String {
    let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
    folded.trim().to_string()
}
