//! The languages a text index knows (MongoDB's text index version 3 list):
//! each one's Snowball stemmer (`rust-stemmers`) and stop words (the
//! `stop-words` crate's NLTK lists, the Snowball project's lists, BSD
//! licensed; MongoDB's own lists are under the SSPL, so not copied).
//! `none` stems nothing and drops no word.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// One supported language, built once per process.
pub struct Language {
    /// MongoDB's canonical name (`english`), as a query or document may
    /// also spell it by its two-letter code (`en`).
    pub name: &'static str,
    stemmer: Option<Stemmer>,
    /// Stop words, lower case with their diacritics (MongoDB compares a
    /// word lower cased but before it strips diacritics).
    stop_words: HashSet<&'static str>,
}

impl std::fmt::Debug for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Language({})", self.name)
    }
}

/// (name, two-letter code, stemmer, stop-words code).
const TABLE: &[(&str, &str, Option<Algorithm>, &str)] = &[
    ("danish", "da", Some(Algorithm::Danish), "da"),
    ("dutch", "nl", Some(Algorithm::Dutch), "nl"),
    ("english", "en", Some(Algorithm::English), "en"),
    ("finnish", "fi", Some(Algorithm::Finnish), "fi"),
    ("french", "fr", Some(Algorithm::French), "fr"),
    ("german", "de", Some(Algorithm::German), "de"),
    ("hungarian", "hu", Some(Algorithm::Hungarian), "hu"),
    ("italian", "it", Some(Algorithm::Italian), "it"),
    ("norwegian", "nb", Some(Algorithm::Norwegian), "no"),
    ("portuguese", "pt", Some(Algorithm::Portuguese), "pt"),
    ("romanian", "ro", Some(Algorithm::Romanian), "ro"),
    ("russian", "ru", Some(Algorithm::Russian), "ru"),
    ("spanish", "es", Some(Algorithm::Spanish), "es"),
    ("swedish", "sv", Some(Algorithm::Swedish), "sv"),
    ("turkish", "tr", Some(Algorithm::Turkish), "tr"),
    ("none", "none", None, ""),
];

fn all() -> &'static HashMap<&'static str, Language> {
    static ALL: OnceLock<HashMap<&'static str, Language>> = OnceLock::new();
    ALL.get_or_init(|| {
        TABLE
            .iter()
            .map(|(name, _, algorithm, stop_code)| {
                let stop_words = if stop_code.is_empty() {
                    HashSet::new()
                } else {
                    stop_words::get(stop_code).iter().copied().collect()
                };
                (
                    *name,
                    Language {
                        name,
                        stemmer: algorithm.map(Stemmer::create),
                        stop_words,
                    },
                )
            })
            .collect()
    })
}

/// The language `name` names (a name or a two-letter code, any case), or
/// `None` when MongoDB's version 3 text index does not support it.
pub fn lookup(name: &str) -> Option<&'static Language> {
    let lower = name.to_lowercase();
    let canonical = TABLE
        .iter()
        .find(|(n, code, _, _)| *n == lower || *code == lower)?
        .0;
    all().get(canonical)
}

impl Language {
    /// Whether `lower` (a lower-cased word) is a stop word.
    pub fn is_stop_word(&self, lower: &str) -> bool {
        self.stop_words.contains(lower)
    }

    /// Whether this is English, whose words keep their apostrophes.
    pub fn is_english(&self) -> bool {
        self.name == "english"
    }

    /// The Snowball stem of `word` (the word itself for `none`).
    pub fn stem(&self, word: &str) -> String {
        match &self.stemmer {
            Some(s) => s.stem(word).into_owned(),
            None => word.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_any_case() {
        assert_eq!(lookup("english").unwrap().name, "english");
        assert_eq!(lookup("EN").unwrap().name, "english");
        assert_eq!(lookup("Spanish").unwrap().name, "spanish");
        assert_eq!(lookup("nb").unwrap().name, "norwegian");
        assert_eq!(lookup("none").unwrap().name, "none");
        assert!(lookup("klingon").is_none());
        assert!(lookup("").is_none());
        // Languages MongoDB's v3 index does not have, though a stemmer exists.
        assert!(lookup("arabic").is_none());
    }

    #[test]
    fn stems_and_stop_words_per_language() {
        let en = lookup("english").unwrap();
        assert_eq!(en.stem("running"), "run");
        assert_eq!(en.stem("coffees"), "coffe");
        assert!(en.is_stop_word("the"));
        assert!(!en.is_stop_word("coffee"));
        let fr = lookup("french").unwrap();
        assert!(fr.is_stop_word("le"));
        // Compared lower cased, diacritics kept.
        assert!(fr.is_stop_word("été"));
        assert!(!fr.is_stop_word("ete"));
        let none = lookup("none").unwrap();
        assert_eq!(none.stem("running"), "running");
        assert!(!none.is_stop_word("the"));
    }
}
