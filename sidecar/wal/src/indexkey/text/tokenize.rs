//! Splitting text into the terms a text index keeps, as MongoDB's version 3
//! (Unicode) tokenizer does: words are runs between delimiters; each word
//! is lower cased and checked against the language's stop words, stemmed
//! (Snowball stemmers are diacritic sensitive, so before stripping), and
//! the stem's diacritics removed (NFD, combining marks dropped).
//! `$caseSensitive` stems the word as written; `$diacriticSensitive` keeps
//! the stem's marks.
//!
//! Delimiters: whitespace, ASCII punctuation and symbols other than `_`
//! (and, in English, the apostrophe: `don't` is one word), and Unicode
//! punctuation (Latin-1 and general punctuation, CJK and fullwidth forms);
//! MongoDB's list is the Unicode properties White_Space, Dash, Hyphen,
//! Quotation_Mark, Terminal_Punctuation, Pattern_Syntax and STerm, which
//! these cover for the scripts it stems.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::language::Language;

/// How a word becomes a term: MongoDB's defaults fold case and diacritics;
/// `$caseSensitive` / `$diacriticSensitive` keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sensitivity {
    pub case: bool,
    pub diacritics: bool,
}

/// Whether `c` separates words (`english`: the apostrophe does not).
pub fn is_delimiter(c: char, english: bool) -> bool {
    if c.is_whitespace() {
        return true;
    }
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_' || (english && c == '\''));
    }
    matches!(c as u32,
        // Latin-1 punctuation and symbols (Pattern_Syntax), not its
        // letters (ª, µ, º) or digits (², ¹, ¼).
        0x00A1..=0x00A7 | 0x00A9 | 0x00AB | 0x00AC | 0x00AE | 0x00B0 | 0x00B1
        | 0x00B6 | 0x00BB | 0x00BF | 0x00D7 | 0x00F7
        | 0x2000..=0x206F   // general punctuation
        | 0x2190..=0x23FF   // arrows, operators, technical (Pattern_Syntax)
        | 0x2500..=0x2BFF   // box drawing .. misc symbols and arrows
        | 0x2E00..=0x2E7F   // supplemental punctuation
        | 0x3000..=0x303F   // CJK symbols and punctuation
        | 0xFE30..=0xFE4F   // CJK compatibility forms
        | 0xFE50..=0xFE6F   // small form variants
        | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// The words of `text`, as written.
pub fn words(text: &str, english: bool) -> impl Iterator<Item = &str> {
    text.split(move |c| is_delimiter(c, english))
        .filter(|w| !w.is_empty())
}

/// `s` without diacritics: decomposed, combining marks dropped, recomposed.
pub fn strip_diacritics(s: &str) -> String {
    s.nfd().filter(|c| !is_combining_mark(*c)).nfc().collect()
}

/// `s` folded as `sensitivity` asks: what a phrase is compared in.
pub fn fold_with(s: &str, sensitivity: Sensitivity) -> String {
    let cased = if sensitivity.case {
        s.to_owned()
    } else {
        s.to_lowercase()
    };
    if sensitivity.diacritics {
        cased
    } else {
        strip_diacritics(&cased)
    }
}

/// The terms of `text` in `language`: stop words dropped, stems kept, in
/// order (repeats included, for term frequencies).
pub fn terms(text: &str, language: &Language, sensitivity: Sensitivity) -> Vec<String> {
    let mut out = Vec::new();
    for word in words(text, language.is_english()) {
        let lower = word.to_lowercase();
        if language.is_stop_word(&lower) {
            continue;
        }
        let stem = language.stem(if sensitivity.case { word } else { &lower });
        out.push(if sensitivity.diacritics {
            stem
        } else {
            strip_diacritics(&stem)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::language::lookup;
    use super::*;

    fn en(s: &str) -> Vec<String> {
        terms(s, lookup("english").unwrap(), Sensitivity::default())
    }

    #[test]
    fn words_split_on_punctuation_and_space() {
        let w: Vec<&str> = words(
            "Hello, world! it's a co-op — “quoted” snake_case 42 ¿µ? 3×4",
            false,
        )
        .collect();
        assert_eq!(
            w,
            vec![
                "Hello",
                "world",
                "it",
                "s",
                "a",
                "co",
                "op",
                "quoted",
                "snake_case",
                "42",
                "µ",
                "3",
                "4"
            ]
        );
        let w: Vec<&str> = words("don't stop", true).collect();
        assert_eq!(w, vec!["don't", "stop"]);
    }

    #[test]
    fn folds_case_and_diacritics() {
        let fold = |s: &str| fold_with(s, Sensitivity::default());
        assert_eq!(fold("Café CRÈME"), "cafe creme");
        assert_eq!(fold("Ångström"), "angstrom");
        assert_eq!(
            fold_with(
                "Café",
                Sensitivity {
                    case: true,
                    diacritics: false
                }
            ),
            "Cafe"
        );
        assert_eq!(
            fold_with(
                "Café",
                Sensitivity {
                    case: false,
                    diacritics: true
                }
            ),
            "café"
        );
    }

    #[test]
    fn stop_words_dropped_and_words_stemmed() {
        assert_eq!(
            en("The coffee shops are running"),
            vec!["coffe", "shop", "run"]
        );
        // "don't" is one English word, and a stop word.
        assert_eq!(en("don't panic"), vec!["panic"]);
        assert_eq!(en("  ,,, "), Vec::<String>::new());
        assert_eq!(
            terms(
                "les cafés",
                lookup("french").unwrap(),
                Sensitivity::default()
            ),
            vec!["caf"]
        );
        assert_eq!(
            terms(
                "the running",
                lookup("none").unwrap(),
                Sensitivity::default()
            ),
            vec!["the", "running"]
        );
    }

    #[test]
    fn sensitive_terms_keep_case_and_marks() {
        let cs = Sensitivity {
            case: true,
            diacritics: false,
        };
        let en = lookup("english").unwrap();
        assert_eq!(terms("Coffees", en, cs), terms("Coffee", en, cs));
        assert_ne!(terms("Coffee", en, cs), terms("coffee", en, cs));
        assert_eq!(terms("coffee", en, cs), vec!["coffe"]);
        let ds = Sensitivity {
            case: false,
            diacritics: true,
        };
        assert_eq!(terms("Café", en, ds), vec!["café"]);
    }

    #[test]
    fn odd_unicode_does_not_panic() {
        let odd = "\u{0301}\u{0301}a\u{200d}\u{fe0f}👩‍👩‍👧 ǅ ﬁ İstanbul \u{10ffff} \u{0}";
        let t = en(odd);
        assert!(!t.is_empty());
        let deep: String = std::iter::repeat_n("e\u{0301}", 10_000).collect();
        assert_eq!(en(&deep).len(), 1);
    }
}
