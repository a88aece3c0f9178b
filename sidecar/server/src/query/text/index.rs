//! A text index's specification: checked and normalized at `createIndexes`
//! the way MongoDB's `FTSSpec::fixSpec` does (the stored form is what
//! `listIndexes` shows), read back for evaluation, and the strings of a
//! document it indexes with their weights and languages (MongoDB's
//! `FTSElementIterator`), which give the term scores (`scoreDocument`).
//!
//! The spec is stored as a document in the branch's catalog like any index
//! spec (`argon_wal` keeps no key map for it: its key holds `"text"`), so
//! branches and time travel see text indexes as they see others.

use std::collections::{BTreeMap, HashMap};

use bson::{Bson, Document, doc};

use super::language::{Language, lookup};
use super::tokenize::{Sensitivity, terms};
use crate::error::{CommandError, ErrorCode, Result};

/// The index key MongoDB stores in place of the text fields.
pub const FTS: &str = "_fts";
pub const FTSX: &str = "_ftsx";
/// The wildcard text field (`{"$**": "text"}`): every string field.
pub const WILDCARD: &str = "$**";
/// Weights lie in the open interval (0, 100000) (MongoDB's
/// `MAX_WORD_WEIGHT`).
const MAX_WEIGHT: i64 = 100_000;
const DEFAULT_LANGUAGE: &str = "english";
const DEFAULT_LANGUAGE_OVERRIDE: &str = "language";
/// The only version built: MongoDB's current one (Unicode tokenizer,
/// diacritic folding).
const TEXT_INDEX_VERSION: i32 = 3;

/// Index spec fields that only a text index takes.
pub const OPTION_FIELDS: &[&str] = &[
    "weights",
    "default_language",
    "language_override",
    "textIndexVersion",
];

fn cannot(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::CannotCreateIndex, message)
}

/// Whether a key pattern (as sent or as stored) is a text index's.
pub fn is_text_key(key: &Document) -> bool {
    key.iter()
        .any(|(k, v)| k == FTS || matches!(v, Bson::String(s) if s == "text"))
}

/// MongoDB's `numberInt()` of a number: truncated toward zero, saturated.
fn number_int(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(x) if x.is_nan() => Some(0),
        Bson::Double(x) => Some(x.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64),
        Bson::Decimal128(_) => super::super::compare::as_f64(v).map(|x| x.trunc() as i64),
        _ => None,
    }
}

/// The stored key pattern and text options of a text index spec as
/// `createIndexes` received it: `(key, options)` where `options` holds
/// `weights`, `default_language`, `language_override` and
/// `textIndexVersion` in the order `listIndexes` shows them.
pub fn fix_spec(spec: &Document) -> Result<(Document, Document)> {
    let key = spec
        .get_document("key")
        .map_err(|_| cannot("text index needs a key"))?;
    let mut fields: BTreeMap<String, i64> = BTreeMap::new();
    let mut out_key = Document::new();
    // extraBefore fields, then the text fields (adjacent), then extraAfter.
    #[derive(PartialEq)]
    enum Part {
        Before,
        Text,
        After,
    }
    let mut part = Part::Before;
    for (k, v) in key {
        let text = matches!(v, Bson::String(s) if s == "text");
        if k == FTS {
            if !matches!(v, Bson::String(s) if s == "text") {
                return Err(cannot("expecting _fts:\"text\""));
            }
            if part == Part::After {
                return Err(cannot("'text' fields in index must all be adjacent"));
            }
            part = Part::Text;
            out_key.insert(FTS, "text");
            continue;
        }
        if k == FTSX {
            if number_int(v) != Some(1) {
                return Err(cannot("expecting _ftsx:1"));
            }
            out_key.insert(FTSX, 1);
            continue;
        }
        if text {
            match part {
                Part::Before => {
                    out_key.insert(FTS, "text");
                    out_key.insert(FTSX, 1);
                    part = Part::Text;
                }
                Part::Text => {}
                Part::After => {
                    return Err(cannot("'text' fields in index must all be adjacent"));
                }
            }
            fields.insert(k.clone(), 1);
            continue;
        }
        if part == Part::Text {
            part = Part::After;
        }
        if !matches!(number_int(v), Some(1) | Some(-1)) {
            return Err(cannot(
                "expected value 1 or -1 for non-text key in compound index",
            ));
        }
        out_key.insert(k.clone(), v.clone());
    }
    if part == Part::Before {
        return Err(cannot(
            "expected additional fields in text index key pattern",
        ));
    }
    match spec.get("weights") {
        None => {}
        Some(Bson::Document(w)) => {
            for (field, weight) in w {
                let Some(n) = number_int(weight) else {
                    return Err(cannot("weight for text index needs numeric type"));
                };
                fields.insert(field.clone(), n);
            }
        }
        Some(Bson::String(s)) if s == WILDCARD => {
            fields.insert(WILDCARD.to_owned(), 1);
        }
        Some(_) => return Err(cannot("text index option 'weights' must be an object")),
    }
    if fields.is_empty() {
        return Err(cannot(
            "text index option 'weights' must specify fields or the wildcard",
        ));
    }
    let mut weights = Document::new();
    for (field, weight) in &fields {
        if *weight <= 0 || *weight >= MAX_WEIGHT {
            return Err(cannot(format!(
                "text index weight must be in the exclusive interval (0,{MAX_WEIGHT}) but found: {weight}"
            )));
        }
        if field != WILDCARD {
            crate::limits::check_path(field)?;
            if field.is_empty() {
                return Err(cannot("weight cannot be on an empty field"));
            }
            for part in field.split('.') {
                if part.is_empty() {
                    return Err(cannot("weight cannot have empty path component"));
                }
                if part.starts_with('$') {
                    return Err(cannot("weight cannot have path component with $ prefix"));
                }
            }
        }
        // In range, so it fits: MongoDB stores weights as 32-bit ints.
        weights.insert(field.clone(), *weight as i32);
    }
    let default_language = match spec.get("default_language") {
        None => DEFAULT_LANGUAGE.to_owned(),
        Some(Bson::String(s)) => s.clone(),
        Some(_) => return Err(cannot("default_language needs a string type")),
    };
    if lookup(&default_language).is_none() {
        return Err(cannot("default_language is not valid"));
    }
    let language_override = match spec.get("language_override") {
        None => DEFAULT_LANGUAGE_OVERRIDE.to_owned(),
        Some(Bson::String(s)) => s.clone(),
        Some(_) => return Err(cannot("language_override must be a string")),
    };
    if language_override.is_empty()
        || language_override.starts_with('$')
        || language_override.contains('.')
    {
        return Err(cannot("language_override is not valid"));
    }
    match spec.get("textIndexVersion") {
        None => {}
        Some(v) => match number_int(v) {
            None => {
                return Err(cannot(
                    "text index option 'textIndexVersion' must be a number",
                ));
            }
            Some(3) => {}
            Some(2) => {
                // Version 2's ASCII tokenizer is not built: refused by name.
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    "textIndexVersion 2 is not supported by Argon (only 3)",
                ));
            }
            Some(n) => return Err(cannot(format!("bad textIndexVersion: {n}"))),
        },
    }
    Ok((
        out_key,
        doc! {
            "weights": weights,
            "default_language": default_language,
            "language_override": language_override,
            "textIndexVersion": TEXT_INDEX_VERSION,
        },
    ))
}

/// A stored text index, ready to evaluate.
#[derive(Debug, Clone)]
pub struct TextIndex {
    pub name: String,
    weights: HashMap<String, f64>,
    wildcard: bool,
    default_language: &'static Language,
    language_override: String,
    /// Key fields before the text fields: a `$text` query needs equality
    /// on each (MongoDB's `extraBefore`).
    pub prefix: Vec<String>,
}

/// One string a text index indexes in a document.
pub struct Indexed<'a> {
    pub text: &'a str,
    pub weight: f64,
    pub language: &'static Language,
}

impl TextIndex {
    /// The collection's text index (at most one), from its stored specs.
    pub fn of_collection(indexes: &[Document]) -> Option<TextIndex> {
        indexes.iter().find_map(TextIndex::from_spec)
    }

    /// `None` when `spec` is not a text index's (or was not stored by
    /// `fix_spec`, which cannot happen for one Argon created).
    pub fn from_spec(spec: &Document) -> Option<TextIndex> {
        let key = spec.get_document("key").ok()?;
        if !key.contains_key(FTS) {
            return None;
        }
        let prefix = key
            .keys()
            .take_while(|k| *k != FTS)
            .cloned()
            .collect::<Vec<_>>();
        let mut weights = HashMap::new();
        let mut wildcard = false;
        for (field, w) in spec.get_document("weights").ok()? {
            if field == WILDCARD {
                wildcard = true;
            } else {
                weights.insert(field.clone(), super::super::compare::as_f64(w)?);
            }
        }
        Some(TextIndex {
            name: spec.get_str("name").unwrap_or_default().to_owned(),
            weights,
            wildcard,
            default_language: lookup(spec.get_str("default_language").ok()?)?,
            language_override: spec.get_str("language_override").ok()?.to_owned(),
            prefix,
        })
    }

    /// The language of a document without a language override field (and
    /// of a query without `$language`).
    pub fn default_language(&self) -> &'static Language {
        self.default_language
    }

    /// The language a (sub)document's text is in: its language override
    /// field, else `current`. MongoDB's 17261 / 17262 when the field is not
    /// a string or names a language it does not support.
    pub fn language_of(
        &self,
        doc: &Document,
        current: &'static Language,
    ) -> Result<&'static Language> {
        match doc.get(&self.language_override) {
            None => Ok(current),
            Some(Bson::String(s)) => lookup(s).ok_or_else(|| {
                CommandError::new(
                    ErrorCode::Location17262,
                    format!("language override unsupported: {s}"),
                )
            }),
            Some(_) => Err(CommandError::new(
                ErrorCode::Location17261,
                "found language override field in document with non-string type",
            )),
        }
    }

    /// Refuses a document this index cannot index (its language, at any
    /// level the index reads): what an insert or update checks.
    pub fn check_document(&self, doc: &Document) -> Result<()> {
        self.strings(doc).map(|_| ())
    }

    /// The strings `doc` has in the indexed fields, with their weights and
    /// languages: the weighted paths (through arrays and subdocuments), or
    /// every string field for the wildcard index. A subdocument's own
    /// language override field applies below it.
    pub fn strings<'a>(&self, doc: &'a Document) -> Result<Vec<Indexed<'a>>> {
        let language = self.language_of(doc, self.default_language)?;
        let mut out = Vec::new();
        self.walk(doc, "", language, &mut out, 0)?;
        Ok(out)
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
    ) -> Result<()> {
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
    ) -> Result<()> {
        // Stored documents are at most `limits::MAX_STORAGE_DEPTH` deep;
        // the bound keeps the recursion finite whatever reaches here.
        if depth > crate::limits::MAX_BSON_DEPTH {
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
    pub fn term_scores(&self, doc: &Document) -> Result<HashMap<String, f64>> {
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
        e.count += 1;
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

    fn fixed(spec: Document) -> Result<(Document, Document)> {
        fix_spec(&spec)
    }

    fn index(spec: Document) -> TextIndex {
        let (key, options) = fixed(spec).unwrap();
        let mut stored = doc! {"v": 2, "key": key, "name": "t"};
        stored.extend(options);
        TextIndex::from_spec(&stored).unwrap()
    }

    #[test]
    fn stored_as_mongodb_shows_it() {
        let (key, options) = fixed(doc! {"key": {"title": "text", "body": "text"}}).unwrap();
        assert_eq!(key, doc! {"_fts": "text", "_ftsx": 1});
        assert_eq!(
            options,
            doc! {"weights": {"body": 1, "title": 1}, "default_language": "english",
            "language_override": "language", "textIndexVersion": 3}
        );
        let (key, options) = fixed(doc! {
            "key": {"a": 1, "title": "text", "b": -1},
            "weights": {"title": 10.9, "extra": 2},
            "default_language": "Spanish",
            "language_override": "idioma",
        })
        .unwrap();
        assert_eq!(key, doc! {"a": 1, "_fts": "text", "_ftsx": 1, "b": -1});
        assert_eq!(
            options.get_document("weights").unwrap(),
            &doc! {"extra": 2, "title": 10}
        );
        assert_eq!(options.get_str("default_language").unwrap(), "Spanish");
        let (_, options) = fixed(doc! {"key": {"$**": "text"}}).unwrap();
        assert_eq!(options.get_document("weights").unwrap(), &doc! {"$**": 1});
        // The stored form fixes to itself (a spec read back from listIndexes).
        let (key, _) =
            fixed(doc! {"key": {"_fts": "text", "_ftsx": 1}, "weights": {"a": 1}}).unwrap();
        assert_eq!(key, doc! {"_fts": "text", "_ftsx": 1});
    }

    #[test]
    fn invalid_specs_are_refused_with_mongodb_codes() {
        for (spec, code) in [
            (doc! {"key": {"a": "text"}, "weights": {"a": 0}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a": 100000}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a": -5}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a": 0.5}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a": "x"}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a": f64::NAN}}, 67),
            (
                doc! {"key": {"a": "text"}, "weights": {"a": f64::INFINITY}},
                67,
            ),
            (doc! {"key": {"a": "text"}, "weights": 5}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"$x": 1}}, 67),
            (doc! {"key": {"a": "text"}, "weights": {"a..b": 1}}, 67),
            (
                doc! {"key": {"a": "text"}, "default_language": "klingon"},
                67,
            ),
            (doc! {"key": {"a": "text"}, "default_language": 1}, 67),
            (doc! {"key": {"a": "text"}, "language_override": "$x"}, 67),
            (doc! {"key": {"a": "text"}, "language_override": "a.b"}, 67),
            (doc! {"key": {"a": "text"}, "language_override": ""}, 67),
            (doc! {"key": {"a": "text"}, "language_override": 3}, 67),
            (doc! {"key": {"a": "text"}, "textIndexVersion": 1}, 67),
            (doc! {"key": {"a": "text"}, "textIndexVersion": "3"}, 67),
            (doc! {"key": {"a": "text"}, "textIndexVersion": 2}, 115),
            (doc! {"key": {"a": "text", "b": 1, "c": "text"}}, 67),
            (doc! {"key": {"a": "text", "b": 2}}, 67),
            (doc! {"key": {"_fts": "x", "_ftsx": 1}}, 67),
        ] {
            let e = fixed(spec.clone()).unwrap_err();
            assert_eq!(e.code.code(), code, "{spec}: {}", e.message);
        }
        // Weights in range are kept: 1 and 99999.
        assert!(fixed(doc! {"key": {"a": "text"}, "weights": {"a": 99999, "b": 1}}).is_ok());
    }

    #[test]
    fn indexed_strings_follow_weights_arrays_and_languages() {
        let ix = index(doc! {"key": {"title": "text"}, "weights": {"c.d": 5}});
        let d = doc! {"title": "hello", "other": "no", "c": [{"d": "x", "language": "french"}, {"d": ["y", 3]}]};
        let got: Vec<(String, f64, &str)> = ix
            .strings(&d)
            .unwrap()
            .iter()
            .map(|s| (s.text.to_owned(), s.weight, s.language.name))
            .collect();
        assert_eq!(
            got,
            vec![
                ("hello".into(), 1.0, "english"),
                ("x".into(), 5.0, "french"),
                ("y".into(), 5.0, "english")
            ]
        );
        let all = index(doc! {"key": {"$**": "text"}, "weights": {"b": 3}});
        let got: Vec<f64> = all
            .strings(&doc! {"a": "x", "b": "y", "n": {"m": "z"}})
            .unwrap()
            .iter()
            .map(|s| s.weight)
            .collect();
        assert_eq!(got, vec![1.0, 3.0, 1.0]);
    }

    #[test]
    fn language_override_values_are_checked() {
        let ix = index(doc! {"key": {"t": "text"}});
        assert_eq!(
            ix.check_document(&doc! {"t": "x", "language": "klingon"})
                .unwrap_err()
                .code
                .code(),
            17262
        );
        assert_eq!(
            ix.check_document(&doc! {"t": "x", "language": 5})
                .unwrap_err()
                .code
                .code(),
            17261
        );
        assert_eq!(
            ix.check_document(&doc! {"t": {"language": ["en"]}})
                .unwrap_err()
                .code
                .code(),
            17261
        );
        assert!(
            ix.check_document(&doc! {"t": "x", "language": "ES"})
                .is_ok()
        );
        // Outside the indexed fields a subdocument's language is not read.
        assert!(ix.check_document(&doc! {"o": {"language": 5}}).is_ok());
    }

    #[test]
    fn term_scores_as_mongodb_computes_them() {
        let ix = index(doc! {"key": {"t": "text"}, "weights": {"w": 10}});
        // One term alone: weight 1 × freq 1 × coeff (0.5·1/1 + 0.5), and
        // 1.1× when the string is the term itself (its stem unchanged).
        let s = ix.term_scores(&doc! {"t": "coffee"}).unwrap();
        assert!((s["coffe"] - 1.0).abs() < 1e-12);
        let s = ix.term_scores(&doc! {"t": "Cake"}).unwrap();
        assert!((s["cake"] - 1.1).abs() < 1e-12);
        // "coffee shop coffee": coffee count 2 of 3, freq 1 + 1/2.
        let s = ix.term_scores(&doc! {"t": "coffee shop coffee"}).unwrap();
        assert!((s["coffe"] - 1.5 * (0.5 * 2.0 / 3.0 + 0.5)).abs() < 1e-12);
        assert!((s["shop"] - (0.5 / 3.0 + 0.5)).abs() < 1e-12);
        // Weighted field, and two fields add up.
        let s = ix
            .term_scores(&doc! {"t": "cake", "w": "cake tea"})
            .unwrap();
        assert!((s["cake"] - (1.1 + 10.0 * 0.75)).abs() < 1e-12);
    }
}
