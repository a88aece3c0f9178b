//! Text index keys, and the one derivation of terms both the keys and the
//! server's `$text` evaluation use (`language`, `tokenize`): a stored text
//! index spec (`{_fts: "text", _ftsx: 1}` between its prefix and suffix
//! fields, with `weights`, `default_language` and `language_override`, as
//! the server's `createIndexes` stores it) read back as a [`TextSpec`];
//! the strings it indexes in a document with their weights and languages
//! (MongoDB's `FTSElementIterator`); their term scores (`scoreDocument`);
//! and the distinct terms a document is keyed under.
//!
//! MongoDB's text keys are `(prefix..., term, score, suffix...)`; a key map
//! here holds `(prefix..., term, suffix...)` and the score is computed when
//! a candidate is evaluated, so keys never depend on weights' arithmetic.
//! Invariant the planner relies on: a document the server's evaluator
//! matches for a positive term `t` (folded: no case or diacritic
//! sensitivity) has `t` among [`TextSpec::key_terms`], because both come
//! from [`TextSpec::strings`] and [`tokenize::terms`] with the default
//! [`tokenize::Sensitivity`].

pub mod language;
pub mod tokenize;

use std::collections::{BTreeSet, HashMap};

use bson::{Bson, Document};

use language::{Language, lookup};
use tokenize::{Sensitivity, terms};

/// The index key MongoDB stores in place of the text fields.
pub const FTS: &str = "_fts";
pub const FTSX: &str = "_ftsx";
/// The wildcard text field (`{"$**": "text"}`): every string field.
pub const WILDCARD: &str = "$**";
/// How deep the walk for indexed strings goes: stored documents are far
/// shallower (the server's storage depth limit); the bound only keeps the
/// recursion finite whatever reaches the key code.
const MAX_WALK_DEPTH: usize = 200;

/// Why a (sub)document's language override cannot be used: MongoDB's 17261
/// and 17262 (the server maps them to its codes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LanguageError {
    #[error("found language override field in document with non-string type")]
    NotString,
    #[error("language override unsupported: {0}")]
    Unsupported(String),
}

/// A stored text index, ready to key and evaluate documents.
#[derive(Debug, Clone)]
pub struct TextSpec {
    pub name: String,
    weights: HashMap<String, f64>,
    wildcard: bool,
    default_language: &'static Language,
    language_override: String,
    /// Key fields before the text fields: a `$text` query needs equality
    /// on each (MongoDB's `extraBefore`).
    pub prefix: Vec<String>,
    /// Key fields after the text fields (`extraAfter`).
    pub suffix: Vec<String>,
}

/// Equal when the specs key every document alike (the name aside; weights
/// compared exactly), so a store can keep the keys of a recreated index.
impl PartialEq for TextSpec {
    fn eq(&self, other: &TextSpec) -> bool {
        self.wildcard == other.wildcard
            && self.default_language.name == other.default_language.name
            && self.language_override == other.language_override
            && self.prefix == other.prefix
            && self.suffix == other.suffix
            && self.weights.len() == other.weights.len()
            && self.weights.iter().all(|(k, w)| {
                other
                    .weights
                    .get(k)
                    .is_some_and(|o| o.to_bits() == w.to_bits())
            })
    }
}

impl Eq for TextSpec {}

/// One string a text index indexes in a document.
pub struct Indexed<'a> {
    pub text: &'a str,
    pub weight: f64,
    pub language: &'static Language,
}

fn number(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(x) => Some(*x),
        _ => None,
    }
}

impl TextSpec {
    /// `None` when `spec` is not a stored text index's (its key has no
    /// `_fts`, or its options are not as `createIndexes` stores them).
    pub fn from_spec(spec: &Document) -> Option<TextSpec> {
        let key = spec.get_document("key").ok()?;
        if !key.contains_key(FTS) {
            return None;
        }
        let prefix = key
            .keys()
            .take_while(|k| *k != FTS)
            .cloned()
            .collect::<Vec<_>>();
        let suffix = key
            .keys()
            .skip_while(|k| *k != FTS)
            .filter(|k| *k != FTS && *k != FTSX)
            .cloned()
            .collect::<Vec<_>>();
        let mut weights = HashMap::new();
        let mut wildcard = false;
        for (field, w) in spec.get_document("weights").ok()? {
            if field == WILDCARD {
                wildcard = true;
            } else {
                weights.insert(field.clone(), number(w)?);
            }
        }
        Some(TextSpec {
            name: spec.get_str("name").unwrap_or_default().to_owned(),
            weights,
            wildcard,
            default_language: lookup(spec.get_str("default_language").ok()?)?,
            language_override: spec.get_str("language_override").ok()?.to_owned(),
            prefix,
            suffix,
        })
    }

    /// The language of a document without a language override field (and
    /// of a query without `$language`).
    pub fn default_language(&self) -> &'static Language {
        self.default_language
    }

    /// The language a (sub)document's text is in: its language override
    /// field, else `current`.
    pub fn language_of(
        &self,
        doc: &Document,
        current: &'static Language,
    ) -> Result<&'static Language, LanguageError> {
        match doc.get(&self.language_override) {
            None => Ok(current),
            Some(Bson::String(s)) => lookup(s).ok_or_else(|| LanguageError::Unsupported(s.clone())),
            Some(_) => Err(LanguageError::NotString),
        }
    }

    /// The strings `doc` has in the indexed fields, with their weights and
    /// languages: the weighted paths (through arrays and subdocuments), or
    /// every string field for the wildcard index. A subdocument's own
    /// language override field applies below it.
    pub fn strings<'a>(&self, doc: &'a Document) -> Result<Vec<Indexed<'a>>, LanguageError> {
        let language = self.language_of(doc, self.default_language)?;
        let mut out = Vec::new();
        self.walk(doc, "", language, &mut out, 0)?;
        Ok(out)
    }

    /// The distinct folded terms `doc` is keyed under (each once, however
    /// often and in however many strings it appears). A document whose
    /// language override a write would refuse (it cannot be stored through
    /// the server) is keyed under no term.
    pub fn key_terms(&self, doc: &Document) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Ok(strings) = self.strings(doc) {
            for s in strings {
                out.extend(terms(s.text, s.language, Sensitivity::default()));
            }
        }
        out
    }

    /// Whether a field at `path` may hold, or lead to, indexed strings.
    fn leads_to_indexed(&self, path: &str) -> bool {
        self.wildcard
            || self.weights.contains_key(path)
            || self.weights.keys().any(|w| {
                w.len() > path.len() && w.starts_with(path) && w.as_bytes()[path.len()] == b'.'
            })
    }

    fn walk<'a>(
        &self,
        doc: &'a Document,
        prefix: &str,
        language: &'static Language,
        out: &mut Vec<Indexed<'a>>,
        depth: usize,
    ) -> Result<(), LanguageError> {
        for (k, v) in doc {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if self.leads_to_indexed(&path) {
                self.value(v, &path, language, out, depth)?;
            }
        }
        Ok(())
    }

    fn value<'a>(
        &self,
        v: &'a Bson,
        path: &str,
        language: &'static Language,
        out: &mut Vec<Indexed<'a>>,
        depth: usize,
    ) -> Result<(), LanguageError> {
        if depth > MAX_WALK_DEPTH {
            return Ok(());
        }
        match v {
            Bson::String(s) => {
                let weight = match self.weights.get(path) {
                    Some(w) => *w,
                    None if self.wildcard => 1.0,
                    None => return Ok(()),
                };
                out.push(Indexed {
                    text: s,
                    weight,
                    language,
                });
            }
            Bson::Array(items) => {
                for item in items {
                    self.value(item, path, language, out, depth + 1)?;
                }
            }
            Bson::Document(d) => {
                let language = self.language_of(d, language)?;
                self.walk(d, path, language, out, depth + 1)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The score of each term of `doc` (MongoDB's `scoreDocument`): per
    /// string, a term's weight × frequency × coefficient, where a repeat
    /// counts half the previous (1 + 1/2 + 1/4 ...), the coefficient is
    /// `0.5 × count / terms in the string + 0.5`, and a string that is the
    /// term itself gets 1.1×; summed over the strings.
    pub fn term_scores(&self, doc: &Document) -> Result<HashMap<String, f64>, LanguageError> {
        let mut scores: HashMap<String, f64> = HashMap::new();
        for s in self.strings(doc)? {
            score_string(s.text, s.weight, s.language, &mut scores);
        }
        Ok(scores)
    }
}

fn score_string(raw: &str, weight: f64, language: &Language, scores: &mut HashMap<String, f64>) {
    struct Seen {
        count: u32,
        exp: f64,
        freq: f64,
    }
    let tokens = terms(raw, language, Sensitivity::default());
    if tokens.is_empty() {
        return;
    }
    let total = tokens.len() as f64;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    for t in tokens {
        let e = seen.entry(t).or_insert(Seen {
            count: 0,
            exp: 0.0,
            freq: 0.0,
        });
        e.exp = if e.exp == 0.0 { 1.0 } else { e.exp * 2.0 };
        e.count = e.count.saturating_add(1);
        e.freq += 1.0 / e.exp;
    }
    for (term, s) in seen {
        let coeff = 0.5 * f64::from(s.count) / total + 0.5;
        let adjustment = if raw.len() == term.len() && raw.eq_ignore_ascii_case(&term) {
            1.1
        } else {
            1.0
        };
        *scores.entry(term).or_insert(0.0) += weight * s.freq * coeff * adjustment;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn spec(key: Document, weights: Document) -> TextSpec {
        TextSpec::from_spec(&doc! {
            "v": 2, "key": key, "name": "t", "weights": weights,
            "default_language": "english", "language_override": "language",
            "textIndexVersion": 3,
        })
        .unwrap()
    }

    #[test]
    fn prefix_and_suffix_fields_around_the_text_fields() {
        let s = spec(
            doc! {"a": 1, "_fts": "text", "_ftsx": 1, "b": -1},
            doc! {"t": 1},
        );
        assert_eq!(s.prefix, vec!["a"]);
        assert_eq!(s.suffix, vec!["b"]);
        assert!(TextSpec::from_spec(&doc! {"key": {"a": 1}, "name": "a_1"}).is_none());
    }

    #[test]
    fn key_terms_are_distinct_folded_stems_in_each_strings_language() {
        let s = spec(doc! {"_fts": "text", "_ftsx": 1}, doc! {"t": 1, "u.v": 2});
        let got = s.key_terms(&doc! {
            "t": "The Coffees, COFFEE and cafés",
            "u": [{"v": "les cafés", "language": "french"}, {"v": 3}],
            "other": "ignored",
        });
        let want: BTreeSet<String> = ["coffe", "cafe", "caf"].map(String::from).into();
        assert_eq!(got, want);
        // A language a write refuses: no keys, never a panic.
        assert!(s.key_terms(&doc! {"t": "x", "language": 5}).is_empty());
        assert!(
            s.key_terms(&doc! {"t": "x", "language": "klingon"})
                .is_empty()
        );
    }

    #[test]
    fn term_scores_as_mongodb_computes_them() {
        let s = spec(doc! {"_fts": "text", "_ftsx": 1}, doc! {"t": 1, "w": 10});
        let sc = s.term_scores(&doc! {"t": "coffee"}).unwrap();
        assert!((sc["coffe"] - 1.0).abs() < 1e-12);
        let sc = s.term_scores(&doc! {"t": "Cake"}).unwrap();
        assert!((sc["cake"] - 1.1).abs() < 1e-12);
        let sc = s.term_scores(&doc! {"t": "coffee shop coffee"}).unwrap();
        assert!((sc["coffe"] - 1.5 * (0.5 * 2.0 / 3.0 + 0.5)).abs() < 1e-12);
        let sc = s.term_scores(&doc! {"t": "cake", "w": "cake tea"}).unwrap();
        assert!((sc["cake"] - (1.1 + 10.0 * 0.75)).abs() < 1e-12);
    }
}
