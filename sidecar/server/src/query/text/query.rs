//! A `$text` query: parsed from the filter (`$search`, `$language`,
//! `$caseSensitive`, `$diacriticSensitive`), then compiled against the
//! collection's text index into the terms and phrases it looks for, as
//! MongoDB's `FTSQueryImpl` and `FTSMatcher` do.
//!
//! `$search` is split on whitespace, `-` and `"`: a `"quoted phrase"` must
//! appear in an indexed string (its words also count as terms), `-word` and
//! `-"phrase"` exclude a document (a `-` negates up to the next whitespace,
//! and only right after whitespace or at the start), other words are terms
//! of which a document needs one. Terms are tokenized as the index does
//! (stop words dropped, stemmed) in the query's language.

use std::collections::{HashMap, HashSet};

use aho_corasick::AhoCorasick;
use bson::{Bson, Document};

use super::index::TextIndex;
use super::language::lookup;
use super::tokenize::{Sensitivity, fold_with, terms};
use crate::error::{CommandError, Result};

/// `$text`'s argument, parsed (nothing about the index yet).
#[derive(Debug, Clone, PartialEq)]
pub struct TextQuery {
    pub search: String,
    pub language: Option<String>,
    pub sensitivity: Sensitivity,
}

impl TextQuery {
    /// Parses `{$search, $language?, $caseSensitive?, $diacriticSensitive?}`
    /// with MongoDB's errors (`$text` expects an object, 2; wrong types, 14;
    /// any other field, 2).
    pub fn parse(arg: &Bson) -> Result<TextQuery> {
        let Bson::Document(d) = arg else {
            return Err(CommandError::bad_value("$text expects an object"));
        };
        let search = match d.get("$search") {
            Some(Bson::String(s)) => s.clone(),
            _ => {
                return Err(CommandError::type_mismatch(
                    "$search requires a string value",
                ));
            }
        };
        let mut expected = 1;
        let language = match d.get("$language") {
            None => None,
            Some(Bson::String(s)) => {
                expected += 1;
                Some(s.clone())
            }
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "$language requires a string value",
                ));
            }
        };
        let mut flag = |name: &str| -> Result<bool> {
            match d.get(name) {
                None => Ok(false),
                Some(Bson::Boolean(b)) => {
                    expected += 1;
                    Ok(*b)
                }
                Some(_) => Err(CommandError::type_mismatch(format!(
                    "{name} requires a boolean value"
                ))),
            }
        };
        let sensitivity = Sensitivity {
            case: flag("$caseSensitive")?,
            diacritics: flag("$diacriticSensitive")?,
        };
        if d.len() != expected {
            return Err(CommandError::bad_value("extra fields in $text"));
        }
        Ok(TextQuery {
            search,
            language,
            sensitivity,
        })
    }
}

/// The parts of `$search` before tokenizing.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    positive: String,
    negative: String,
    phrases: Vec<String>,
    negated_phrases: Vec<String>,
}

fn is_space(c: char) -> bool {
    // C's isspace, which MongoDB's query parser uses.
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// MongoDB's `FTSQueryParser` + `FTSQueryImpl::parse`.
fn split(search: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut in_negation = false;
    let mut in_phrase = false;
    let mut quote_at = 0usize;
    let mut previous_space = true;
    let mut chars = search.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if is_space(c) {
            previous_space = true;
            chars.next();
            continue;
        }
        let space_before = std::mem::replace(&mut previous_space, false);
        match c {
            '-' => {
                chars.next();
                if !in_phrase && space_before {
                    in_negation = true;
                }
            }
            '"' => {
                chars.next();
                if in_phrase {
                    let phrase = search[quote_at + 1..at].to_owned();
                    if in_negation {
                        out.negated_phrases.push(phrase);
                    } else {
                        out.phrases.push(phrase);
                    }
                    in_phrase = false;
                } else {
                    in_phrase = true;
                    if in_negation && space_before {
                        in_negation = false;
                    }
                    quote_at = at;
                }
            }
            _ => {
                let start = at;
                let mut end = at;
                while let Some(&(i, c)) = chars.peek() {
                    if is_space(c) || c == '-' || c == '"' {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                let word = &search[start..end];
                if in_phrase && in_negation {
                    continue;
                }
                if in_negation && space_before {
                    in_negation = false;
                }
                let sentence = if in_negation {
                    &mut out.negative
                } else {
                    &mut out.positive
                };
                sentence.push_str(word);
                sentence.push(' ');
            }
        }
    }
    out
}

/// Phrases found in one pass over a string (Aho-Corasick), however many.
#[derive(Debug)]
struct Phrases {
    folded: Vec<String>,
    finder: Option<AhoCorasick>,
}

impl Phrases {
    fn new(phrases: Vec<String>, sensitivity: Sensitivity) -> Result<Phrases> {
        let folded: Vec<String> = phrases.iter().map(|p| fold_with(p, sensitivity)).collect();
        let finder = if folded.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&folded).map_err(|e| {
                CommandError::bad_value(format!("$text phrases cannot be searched: {e}"))
            })?)
        };
        Ok(Phrases { folded, finder })
    }

    fn is_empty(&self) -> bool {
        self.folded.is_empty()
    }

    /// Marks in `found` the phrases `folded_text` contains.
    fn mark(&self, folded_text: &str, found: &mut [bool]) {
        let Some(finder) = &self.finder else { return };
        for m in finder.find_overlapping_iter(folded_text) {
            found[m.pattern().as_usize()] = true;
        }
        // An empty phrase is in every string (Aho-Corasick reports it once
        // per position, which the loop above already did unless the
        // string is empty).
        for (i, p) in self.folded.iter().enumerate() {
            if p.is_empty() {
                found[i] = true;
            }
        }
    }
}

/// A `$text` query compiled against one text index.
#[derive(Debug)]
pub struct Compiled {
    index: TextIndex,
    sensitivity: Sensitivity,
    /// Positive terms, case and diacritic folded: a document needs one
    /// (the index lookup in MongoDB) and its score sums theirs.
    bounds: HashSet<String>,
    /// Positive terms as `$caseSensitive`/`$diacriticSensitive` keep them
    /// (empty when the query is insensitive: `bounds` decide).
    positive: HashSet<String>,
    negated: HashSet<String>,
    phrases: Phrases,
    negated_phrases: Phrases,
}

impl Compiled {
    /// `query` for `index`; its `$language` (or the index's default)
    /// decides stop words and stems.
    pub fn new(query: &TextQuery, index: TextIndex) -> Result<Compiled> {
        let language = match &query.language {
            Some(name) => lookup(name).ok_or_else(|| {
                CommandError::bad_value(format!(
                    "unsupported language: \"{name}\" for text index version 3"
                ))
            })?,
            None => index.default_language(),
        };
        let parsed = split(&query.search);
        let sensitive = query.sensitivity != Sensitivity::default();
        let bounds: HashSet<String> = terms(&parsed.positive, language, Sensitivity::default())
            .into_iter()
            .collect();
        let positive = if sensitive {
            terms(&parsed.positive, language, query.sensitivity)
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };
        let negated = terms(&parsed.negative, language, query.sensitivity)
            .into_iter()
            .collect();
        Ok(Compiled {
            index,
            sensitivity: query.sensitivity,
            bounds,
            positive,
            negated,
            phrases: Phrases::new(parsed.phrases, query.sensitivity)?,
            negated_phrases: Phrases::new(parsed.negated_phrases, query.sensitivity)?,
        })
    }

    pub fn index(&self) -> &TextIndex {
        &self.index
    }

    /// The positive terms, folded (what the text index is read under), in
    /// byte order.
    pub fn terms(&self) -> impl Iterator<Item = &String> {
        let mut terms: Vec<&String> = self.bounds.iter().collect();
        terms.sort();
        terms.into_iter()
    }

    /// MongoDB's `parsedTextQuery` of explain.
    pub fn parsed_query(&self) -> Document {
        let sorted = |set: &HashSet<String>| {
            let mut v: Vec<String> = set.iter().cloned().collect();
            v.sort();
            v
        };
        let terms = if self.positive.is_empty() {
            sorted(&self.bounds)
        } else {
            sorted(&self.positive)
        };
        bson::doc! {
            "terms": terms,
            "negatedTerms": sorted(&self.negated),
            "phrases": self.phrases.folded.clone(),
            "negatedPhrases": self.negated_phrases.folded.clone(),
        }
    }

    /// Whether `doc` matches (MongoDB: a positive term among its index
    /// keys, then `FTSMatcher`: no negated term or phrase, every phrase).
    pub fn matches(&self, doc: &Document) -> Result<bool> {
        if self.bounds.is_empty() {
            // No positive term (only negations or stop words): MongoDB's
            // index scan has no bounds and returns nothing.
            return Ok(false);
        }
        let strings = self.index.strings(doc)?;
        let sensitive = self.sensitivity != Sensitivity::default();
        let (mut has_bound, mut has_positive) = (false, !sensitive);
        let mut phrases = vec![false; self.phrases.folded.len()];
        let mut negated_phrases = vec![false; self.negated_phrases.folded.len()];
        for s in &strings {
            let folded_terms = terms(s.text, s.language, Sensitivity::default());
            has_bound |= folded_terms.iter().any(|t| self.bounds.contains(t));
            let own_terms = if sensitive {
                terms(s.text, s.language, self.sensitivity)
            } else {
                folded_terms
            };
            if sensitive {
                has_positive |= own_terms.iter().any(|t| self.positive.contains(t));
            }
            if own_terms.iter().any(|t| self.negated.contains(t)) {
                return Ok(false);
            }
            if !self.phrases.is_empty() || !self.negated_phrases.is_empty() {
                let folded = fold_with(s.text, self.sensitivity);
                self.phrases.mark(&folded, &mut phrases);
                self.negated_phrases.mark(&folded, &mut negated_phrases);
                if negated_phrases.iter().any(|f| *f) {
                    return Ok(false);
                }
            }
        }
        Ok(has_bound && has_positive && phrases.iter().all(|f| *f))
    }

    /// The document's text score: the sum of its scores for the query's
    /// (folded) positive terms (MongoDB's `TextOr` stage).
    pub fn score(&self, doc: &Document) -> Result<f64> {
        let scores: HashMap<String, f64> = self.index.term_scores(doc)?;
        Ok(scores
            .iter()
            .filter(|(t, _)| self.bounds.contains(*t))
            .map(|(_, s)| s)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn compiled(search: &str, index: Document, extra: Document) -> Compiled {
        let (key, options) = super::super::index::fix_spec(&index).unwrap();
        let mut stored = doc! {"v": 2, "key": key, "name": "t"};
        stored.extend(options);
        let mut q = doc! {"$search": search};
        q.extend(extra);
        Compiled::new(
            &TextQuery::parse(&Bson::Document(q)).unwrap(),
            TextIndex::from_spec(&stored).unwrap(),
        )
        .unwrap()
    }

    fn simple(search: &str) -> Compiled {
        compiled(search, doc! {"key": {"t": "text"}}, doc! {})
    }

    #[test]
    fn search_splits_into_terms_phrases_and_negations() {
        let p = split("coffee -shop \"iced tea\" -\"hot milk\" -cake-pie a-b \"open");
        assert_eq!(p.positive, "coffee iced tea a b open ");
        assert_eq!(p.negative, "shop cake pie ");
        assert_eq!(p.phrases, vec!["iced tea"]);
        assert_eq!(p.negated_phrases, vec!["hot milk"]);
        let p = split("- coffee");
        assert_eq!(p.positive, "coffee ");
        let p = split("-coffee");
        assert_eq!(p.negative, "coffee ");
    }

    #[test]
    fn parse_errors_as_mongodb() {
        for (arg, code) in [
            (Bson::Int32(1), 2),
            (Bson::Document(doc! {}), 14),
            (Bson::Document(doc! {"$search": 1}), 14),
            (Bson::Document(doc! {"$search": "a", "$language": 1}), 14),
            (
                Bson::Document(doc! {"$search": "a", "$caseSensitive": 1}),
                14,
            ),
            (
                Bson::Document(doc! {"$search": "a", "$diacriticSensitive": "yes"}),
                14,
            ),
            (Bson::Document(doc! {"$search": "a", "$foo": 1}), 2),
        ] {
            assert_eq!(
                TextQuery::parse(&arg).unwrap_err().code.code(),
                code,
                "{arg}"
            );
        }
    }

    #[test]
    fn terms_phrases_and_negations_match() {
        let d = |t: &str| doc! {"t": t};
        let q = simple("coffee");
        assert!(q.matches(&d("Coffee shop")).unwrap());
        assert!(q.matches(&d("two coffees")).unwrap());
        assert!(!q.matches(&d("tea")).unwrap());
        let q = simple("coffee -shop");
        assert!(!q.matches(&d("coffee shop")).unwrap());
        assert!(q.matches(&d("coffee bar")).unwrap());
        let q = simple("\"coffee shop\"");
        assert!(q.matches(&d("the Coffee Shop")).unwrap());
        assert!(!q.matches(&d("shop for coffee")).unwrap());
        let q = simple("cafe -\"latte art\"");
        assert!(q.matches(&d("Café")).unwrap());
        assert!(!q.matches(&d("café with latte art")).unwrap());
        // Only negations, or only stop words: nothing matches.
        assert!(!simple("-coffee").matches(&d("tea")).unwrap());
        assert!(!simple("the and").matches(&d("the and")).unwrap());
    }

    #[test]
    fn case_and_diacritic_sensitivity() {
        let cs = compiled(
            "Coffee",
            doc! {"key": {"t": "text"}},
            doc! {"$caseSensitive": true},
        );
        assert!(cs.matches(&doc! {"t": "Coffee"}).unwrap());
        assert!(!cs.matches(&doc! {"t": "coffee"}).unwrap());
        let ds = compiled(
            "café",
            doc! {"key": {"t": "text"}},
            doc! {"$diacriticSensitive": true},
        );
        assert!(ds.matches(&doc! {"t": "Café"}).unwrap());
        assert!(!ds.matches(&doc! {"t": "cafe"}).unwrap());
        let di = simple("café");
        assert!(di.matches(&doc! {"t": "CAFE"}).unwrap());
    }

    #[test]
    fn languages_stem_differently() {
        let es = compiled(
            "corriendo",
            doc! {"key": {"t": "text"}},
            doc! {"$language": "es"},
        );
        assert!(
            es.matches(&doc! {"t": "corriendo", "language": "spanish"})
                .unwrap()
        );
        let none = compiled(
            "running",
            doc! {"key": {"t": "text"}},
            doc! {"$language": "none"},
        );
        assert!(
            !none
                .matches(&doc! {"t": "run", "language": "none"})
                .unwrap()
        );
        assert!(
            none.matches(&doc! {"t": "running", "language": "none"})
                .unwrap()
        );
        let bad =
            TextQuery::parse(&Bson::Document(doc! {"$search": "x", "$language": "xx"})).unwrap();
        let (key, options) = super::super::index::fix_spec(&doc! {"key": {"t": "text"}}).unwrap();
        let mut stored = doc! {"key": key, "name": "t"};
        stored.extend(options);
        let e = Compiled::new(&bad, TextIndex::from_spec(&stored).unwrap()).unwrap_err();
        assert_eq!(e.code.code(), 2);
    }

    #[test]
    fn scores_sum_the_query_terms() {
        let q = compiled(
            "coffee shop",
            doc! {"key": {"t": "text", "w": "text"}, "weights": {"w": 3}},
            doc! {},
        );
        // t: "coffee" 1.0 (stem differs); w: "shop" 3 × 1.1.
        let s = q.score(&doc! {"t": "coffee", "w": "shop"}).unwrap();
        assert!((s - (1.0 + 3.3)).abs() < 1e-12, "{s}");
        assert_eq!(q.score(&doc! {"t": "tea"}).unwrap(), 0.0);
    }

    #[test]
    fn hostile_queries_stay_bounded() {
        let many: String = (0..100_000).map(|i| format!("w{i} ")).collect();
        let q = simple(&many);
        assert!(q.matches(&doc! {"t": "w99999"}).unwrap());
        let phrases: String = (0..20_000).map(|i| format!("\"p{i} q\" ")).collect();
        let q = simple(&phrases);
        assert!(!q.matches(&doc! {"t": "p1 q"}).unwrap());
        let big = "x".repeat(1024 * 1024);
        let q = simple(&big);
        assert!(q.matches(&doc! {"t": big.clone()}).unwrap());
        let odd = "\"\"\"-\"-- -\u{0301}\u{200d} \"-\"";
        let _ = simple(odd).matches(&doc! {"t": "x"}).unwrap();
    }
}
