//! A text index's specification: checked and normalized at `createIndexes`
//! the way MongoDB's `FTSSpec::fixSpec` does (the stored form is what
//! `listIndexes` shows), read back for evaluation, and the strings of a
//! document it indexes with their weights and languages (MongoDB's
//! `FTSElementIterator`), which give the term scores (`scoreDocument`).
//!
//! The spec is stored as a document in the branch's catalog like any index
//! spec, and `argon_wal` keeps its key map (terms, `indexkey::text`), so
//! branches and time travel see text indexes and their keys as they see
//! others.

use std::collections::{BTreeMap, HashMap};

pub use argon_wal::indexkey::text::{FTS, FTSX, WILDCARD};
use argon_wal::indexkey::text::{Indexed, LanguageError, TextSpec};
use bson::{Bson, Document, doc};

use super::language::{Language, lookup};
use crate::error::{CommandError, ErrorCode, Result};
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

/// A stored text index, ready to evaluate: `argon_wal`'s [`TextSpec`]
/// (which also keys the index), its language errors as MongoDB's codes.
#[derive(Debug, Clone)]
pub struct TextIndex {
    pub name: String,
    /// Key fields before the text fields: a `$text` query needs equality
    /// on each (MongoDB's `extraBefore`).
    pub prefix: Vec<String>,
    spec: TextSpec,
}

fn language_error(e: LanguageError) -> CommandError {
    let code = match e {
        LanguageError::NotString => ErrorCode::Location17261,
        LanguageError::Unsupported(_) => ErrorCode::Location17262,
    };
    CommandError::new(code, e.to_string())
}

impl TextIndex {
    /// The collection's text index (at most one), from its stored specs.
    pub fn of_collection(indexes: &[Document]) -> Option<TextIndex> {
        indexes.iter().find_map(TextIndex::from_spec)
    }

    /// `None` when `spec` is not a text index's (or was not stored by
    /// `fix_spec`, which cannot happen for one Argon created).
    pub fn from_spec(spec: &Document) -> Option<TextIndex> {
        let spec = TextSpec::from_spec(spec)?;
        Some(TextIndex {
            name: spec.name.clone(),
            prefix: spec.prefix.clone(),
            spec,
        })
    }

    /// The language of a document without a language override field (and
    /// of a query without `$language`).
    pub fn default_language(&self) -> &'static Language {
        self.spec.default_language()
    }

    /// Refuses a document this index cannot index (its language, at any
    /// level the index reads): what an insert or update checks (MongoDB's
    /// 17261 / 17262).
    pub fn check_document(&self, doc: &Document) -> Result<()> {
        self.strings(doc).map(|_| ())
    }

    /// The strings `doc` has in the indexed fields, with their weights and
    /// languages (see [`TextSpec::strings`]).
    pub fn strings<'a>(&self, doc: &'a Document) -> Result<Vec<Indexed<'a>>> {
        self.spec.strings(doc).map_err(language_error)
    }

    /// The score of each term of `doc` (see [`TextSpec::term_scores`]).
    pub fn term_scores(&self, doc: &Document) -> Result<HashMap<String, f64>> {
        self.spec.term_scores(doc).map_err(language_error)
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
}
