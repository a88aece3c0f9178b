//! Collation: how strings compare under a locale's rules (MongoDB's
//! `collation` option on commands, statements, collections and indexes).
//!
//! The Unicode Collation Algorithm with CLDR's tailorings comes from ICU4X
//! (`icu_collator`, its compiled data); this module maps MongoDB's
//! collation document onto it, validates it with MongoDB's errors, and is
//! the one place a string comparison is decided:
//!
//! - [`compare_strings`] is what `compare::compare` calls for two strings
//!   (or symbols), so filters (`$eq`, ranges, `$in`), `$expr`, sorts,
//!   `distinct`, update operators (`$min`, `$addToSet`, `$pull`...) and
//!   expressions all compare under the same rule;
//! - [`comparison_key`] maps a value to one whose *binary* comparison is the
//!   collated one (each string replaced by its ICU sort key), for what is
//!   hashed rather than compared: `$group` keys, `$addToSet` members,
//!   `$lookup`'s index and unique index keys.
//!
//! A command runs under one collation (MongoDB's rule: the command's, or
//! the collection's default). The command's synchronous evaluation enters
//! it with [`Collation::enter`]; the returned [`Scope`] sets it for the
//! current thread and restores the previous one when dropped. A `Scope` is
//! not `Send`, so it can never be held across an `.await` (handlers are
//! spawned on a multi-threaded runtime, which requires `Send` futures): a
//! scope cannot leak into another request that runs on the same thread.
//! Regular expressions (`$regex`) are not collated, as in MongoDB.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};

use bson::{Bson, Document, doc};
use icu_collator::options::{AlternateHandling, CaseLevel, CollatorOptions, MaxVariable, Strength};
use icu_collator::preferences::{CollationCaseFirst, CollationNumericOrdering};
use icu_collator::{CollatorBorrowed, CollatorPreferences};

use crate::error::{CommandError, ErrorCode, Result};

/// The locales Argon compiles in, named as MongoDB names them: MongoDB
/// 8.0's list, less the variants ICU4X's compiled CLDR data lacks
/// (`@collation=search`, `ko@collation=searchjl`, `zh@collation=big5han`,
/// `zh@collation=gb2312han`), which are refused as unknown locales.
pub const LOCALES: &[&str] = &[
    "af",
    "am",
    "ar",
    "ar@collation=compat",
    "as",
    "az",
    "be",
    "bg",
    "bn",
    "bn@collation=traditional",
    "bo",
    "bs",
    "bs_Cyrl",
    "ca",
    "chr",
    "cs",
    "cy",
    "da",
    "de",
    "de@collation=eor",
    "de@collation=phonebook",
    "de_AT",
    "de_AT@collation=phonebook",
    "dsb",
    "dz",
    "ee",
    "el",
    "en",
    "en_US",
    "en_US_POSIX",
    "eo",
    "es",
    "es@collation=traditional",
    "et",
    "fa",
    "fa_AF",
    "fi",
    "fi@collation=traditional",
    "fil",
    "fo",
    "fr",
    "fr_CA",
    "ga",
    "gl",
    "gu",
    "ha",
    "haw",
    "he",
    "hi",
    "hr",
    "hsb",
    "hu",
    "hy",
    "id",
    "ig",
    "is",
    "it",
    "ja",
    "ja@collation=unihan",
    "ka",
    "kk",
    "kl",
    "km",
    "kn",
    "kn@collation=traditional",
    "ko",
    "ko@collation=unihan",
    "kok",
    "ky",
    "lb",
    "lkt",
    "ln",
    "lo",
    "lt",
    "lv",
    "mk",
    "ml",
    "mn",
    "mr",
    "ms",
    "mt",
    "my",
    "nb",
    "ne",
    "nl",
    "nn",
    "om",
    "or",
    "pa",
    "pl",
    "ps",
    "pt",
    "ro",
    "ru",
    "se",
    "si",
    "si@collation=dictionary",
    "sk",
    "sl",
    "smn",
    "sq",
    "sr",
    "sr_Latn",
    "sv",
    "sw",
    "ta",
    "te",
    "th",
    "to",
    "tr",
    "ug",
    "uk",
    "ur",
    "vi",
    "vi@collation=traditional",
    "wae",
    "yi",
    "yo",
    "zh",
    "zh@collation=unihan",
    "zh@collation=zhuyin",
    "zh_Hant",
    "zu",
];

/// Locales whose CLDR collation is the root collation with nothing
/// tailored (`fr_CA` adds only `[backwards 2]` to it). ICU4X sets the
/// backward secondary level only through a locale's data, so `backwards:
/// true` is honoured on these by collating with `fr-CA`'s data, which is
/// exactly root with backwards on; elsewhere it is refused by name.
const ROOT_LOCALES: &[&str] = &["en", "en_US", "fr", "fr_CA"];

/// The ICU version MongoDB 8.0 reports in a collation's `version`; a
/// client that names another is refused, as MongoDB refuses it.
const VERSION: &str = "57.1";

/// Collators built so far, by their resolved spec: building one costs
/// microseconds, a command may name the same collation on every statement.
const CACHE_LIMIT: usize = 256;

/// A collation: the simple (binary) comparison, or a locale's rules.
#[derive(Clone, Default)]
pub struct Collation(Option<Arc<Collated>>);

struct Collated {
    /// The resolved spec, every field filled in, as MongoDB reports it.
    spec: Document,
    collator: CollatorBorrowed<'static>,
}

impl fmt::Debug for Collation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Collation(simple)"),
            Some(c) => write!(f, "Collation({})", c.spec),
        }
    }
}

impl PartialEq for Collation {
    fn eq(&self, other: &Collation) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => a.spec == b.spec,
            _ => false,
        }
    }
}

thread_local! {
    /// The collation of the command evaluating on this thread (see the
    /// module doc); `None` is the simple collation.
    static ACTIVE: RefCell<Option<Arc<Collated>>> = const { RefCell::new(None) };
}

/// The collation entered on this thread until dropped (see the module doc).
#[must_use = "the collation applies only while the scope is held"]
pub struct Scope {
    previous: Option<Arc<Collated>>,
    /// Not `Send`: a scope never crosses an `.await`.
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTIVE.with(|a| *a.borrow_mut() = previous);
    }
}

impl Collation {
    /// The simple collation: strings compare by their UTF-8 bytes.
    pub fn simple() -> Collation {
        Collation(None)
    }

    pub fn is_simple(&self) -> bool {
        self.0.is_none()
    }

    /// The collation a `collation` field names; absent or null is `None`
    /// (the collection's default applies), `{locale: "simple"}` is the
    /// simple collation.
    pub fn from_field(value: Option<&Bson>) -> Result<Option<Collation>> {
        match value {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Document(spec)) => Collation::parse(spec).map(Some),
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field 'collation' is the wrong type '{}', expected type 'object'",
                super::expr::type_name(other)
            ))),
        }
    }

    /// Parses and validates a collation document with MongoDB's errors.
    pub fn parse(spec: &Document) -> Result<Collation> {
        let requested = Requested::parse(spec)?;
        if requested.locale == "simple" {
            if let Some(k) = spec.keys().find(|k| *k != "locale") {
                return Err(CommandError::bad_value(format!(
                    "Collation option '{k}' is not allowed with locale 'simple'"
                )));
            }
            return Ok(Collation::simple());
        }
        if !LOCALES.contains(&requested.locale.as_str()) {
            return Err(CommandError::bad_value(format!(
                "Field 'locale' is invalid in: {spec}"
            )));
        }
        let key = requested.cache_key();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(c) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Collation(Some(c)));
        }
        let built = Arc::new(requested.build()?);
        if let Ok(mut m) = cache.lock()
            && m.len() < CACHE_LIMIT
        {
            m.insert(key, built.clone());
        }
        Ok(Collation(Some(built)))
    }

    /// The collation as MongoDB reports it (every option filled in), or
    /// `None` for the simple collation, which MongoDB leaves out.
    pub fn spec(&self) -> Option<&Document> {
        self.0.as_ref().map(|c| &c.spec)
    }

    /// Enters this collation on the current thread until the scope drops.
    pub fn enter(&self) -> Scope {
        let previous = ACTIVE.with(|a| a.replace(self.0.clone()));
        Scope {
            previous,
            _thread_bound: PhantomData,
        }
    }

    /// Compares two strings under this collation.
    pub fn compare_str(&self, a: &str, b: &str) -> Ordering {
        match &self.0 {
            None => a.cmp(b),
            Some(c) => c.collator.compare(a, b),
        }
    }

    /// [`comparison_key`] under this collation.
    pub fn key(&self, v: &Bson) -> Bson {
        match &self.0 {
            None => v.clone(),
            Some(c) => key_with(&c.collator, v),
        }
    }
}

/// The collation an operation on `coll` runs under: its own (`own`), else
/// the collection's default (`create` with `collation`), else the simple
/// one: MongoDB's rule.
pub fn for_collection(
    own: Option<&Collation>,
    coll: Option<&argon_wal::CollectionState>,
) -> Result<Collation> {
    match own {
        Some(c) => Ok(c.clone()),
        None => default_of(coll.map(|c| c.options())),
    }
}

/// The default collation a collection's options give (stored resolved by
/// `create`, so it parses as it did then).
pub fn default_of(options: Option<&Document>) -> Result<Collation> {
    Ok(Collation::from_field(options.and_then(|o| o.get("collation")))?.unwrap_or_default())
}

/// The collation entered on this thread (the simple one outside any scope).
pub fn active() -> Collation {
    ACTIVE.with(|a| Collation(a.borrow().clone()))
}

/// Compares two strings under the collation entered on this thread.
pub fn compare_strings(a: &str, b: &str) -> Ordering {
    ACTIVE.with(|active| match &*active.borrow() {
        None => a.cmp(b),
        Some(c) => c.collator.compare(a, b),
    })
}

/// Whether the collation entered on this thread is the simple one.
pub fn active_is_simple() -> bool {
    ACTIVE.with(|a| a.borrow().is_none())
}

/// `v` with every string (and symbol), at any depth, replaced by its sort
/// key under the entered collation (as a string of hex digits, so it
/// orders as the key's bytes do): two values are equal, or ordered, under
/// the collation exactly when their keys are under binary comparison.
/// Field names are not collated, as in MongoDB.
pub fn comparison_key(v: &Bson) -> Bson {
    ACTIVE.with(|active| match &*active.borrow() {
        None => v.clone(),
        Some(c) => key_with(&c.collator, v),
    })
}

/// Whether `v` holds a string or symbol at any depth (its equality depends
/// on the collation).
pub fn has_string(v: &Bson) -> bool {
    match v {
        Bson::String(_) | Bson::Symbol(_) => true,
        Bson::Array(a) => a.iter().any(has_string),
        Bson::Document(d) => d.iter().any(|(_, v)| has_string(v)),
        _ => false,
    }
}

fn key_with(collator: &CollatorBorrowed<'static>, v: &Bson) -> Bson {
    match v {
        Bson::String(s) | Bson::Symbol(s) => {
            let mut bytes = Vec::with_capacity(s.len() * 2);
            let Ok(()) = collator.write_sort_key_to(s, &mut bytes);
            let mut hex = String::with_capacity(bytes.len() * 2);
            for b in bytes {
                hex.push(char::from(HEX[usize::from(b >> 4)]));
                hex.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            Bson::String(hex)
        }
        Bson::Array(a) => Bson::Array(a.iter().map(|v| key_with(collator, v)).collect()),
        Bson::Document(d) => Bson::Document(
            d.iter()
                .map(|(k, v)| (k.clone(), key_with(collator, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

static CACHE: OnceLock<Mutex<HashMap<String, Arc<Collated>>>> = OnceLock::new();

/// A collation document's fields, type-checked.
#[derive(Debug, Default)]
struct Requested {
    locale: String,
    strength: Option<i64>,
    case_level: Option<bool>,
    case_first: Option<String>,
    numeric_ordering: Option<bool>,
    alternate: Option<String>,
    max_variable: Option<String>,
    normalization: Option<bool>,
    backwards: Option<bool>,
}

impl Requested {
    fn parse(spec: &Document) -> Result<Requested> {
        let mut r = Requested::default();
        let mut locale = None;
        for (k, v) in spec {
            match k.as_str() {
                "locale" => locale = Some(string(k, v)?),
                "strength" => r.strength = Some(integer(k, v)?),
                "caseLevel" => r.case_level = Some(boolean(k, v)?),
                "caseFirst" => r.case_first = Some(string(k, v)?),
                "numericOrdering" => r.numeric_ordering = Some(boolean(k, v)?),
                "alternate" => r.alternate = Some(string(k, v)?),
                "maxVariable" => r.max_variable = Some(string(k, v)?),
                "normalization" => r.normalization = Some(boolean(k, v)?),
                "backwards" => r.backwards = Some(boolean(k, v)?),
                "version" => {
                    let version = string(k, v)?;
                    if version != VERSION {
                        return Err(CommandError::bad_value(format!(
                            "Field 'version' in collation {spec} does not match the server's collation version {VERSION}"
                        )));
                    }
                }
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field 'collation.{other}' is an unknown field."),
                    ));
                }
            }
        }
        r.locale = locale.ok_or_else(|| {
            CommandError::new(
                ErrorCode::Location40414,
                "BSON field 'collation.locale' is missing but a required field",
            )
        })?;
        if let Some(s) = r.strength
            && !(1..=5).contains(&s)
        {
            return Err(CommandError::bad_value(format!(
                "Field 'strength' must be an integer 1 through 5. Got: {s}"
            )));
        }
        if let Some(c) = &r.case_first
            && !matches!(c.as_str(), "upper" | "lower" | "off")
        {
            return Err(CommandError::bad_value(format!(
                "Field 'caseFirst' must be 'upper', 'lower', or 'off'. Got: {c}"
            )));
        }
        if let Some(a) = &r.alternate
            && !matches!(a.as_str(), "non-ignorable" | "shifted")
        {
            return Err(CommandError::bad_value(format!(
                "Field 'alternate' must be 'non-ignorable' or 'shifted'. Got: {a}"
            )));
        }
        if let Some(m) = &r.max_variable
            && !matches!(m.as_str(), "punct" | "space")
        {
            return Err(CommandError::bad_value(format!(
                "Field 'maxVariable' must be 'punct' or 'space'. Got: {m}"
            )));
        }
        Ok(r)
    }

    fn cache_key(&self) -> String {
        format!("{self:?}")
    }

    /// The BCP 47 name ICU4X takes for a MongoDB (ICU) locale name:
    /// `de_AT@collation=phonebook` is `de-AT-u-co-phonebk`.
    fn bcp47(locale: &str) -> String {
        let (base, variant) = match locale.split_once("@collation=") {
            Some((b, v)) => (b, Some(v)),
            None => (locale, None),
        };
        let mut out = match base {
            "en_US_POSIX" => "en-US-posix".to_owned(),
            b => b.replace('_', "-"),
        };
        if let Some(v) = variant {
            let co = match v {
                "phonebook" => "phonebk",
                "traditional" => "trad",
                "dictionary" => "dict",
                other => other,
            };
            out.push_str("-u-co-");
            out.push_str(co);
        }
        out
    }

    fn build(&self) -> Result<Collated> {
        let invalid = || {
            CommandError::bad_value(format!(
                "Field 'locale' is invalid in: {{ locale: \"{}\" }}",
                self.locale
            ))
        };
        let mut prefs = preferences(&Self::bcp47(&self.locale)).ok_or_else(invalid)?;
        let mut options = CollatorOptions::default();
        if let Some(s) = self.strength {
            options.strength = Some(match s {
                1 => Strength::Primary,
                2 => Strength::Secondary,
                3 => Strength::Tertiary,
                4 => Strength::Quaternary,
                _ => Strength::Identical,
            });
        }
        if let Some(c) = self.case_level {
            options.case_level = Some(if c { CaseLevel::On } else { CaseLevel::Off });
        }
        if let Some(a) = &self.alternate {
            options.alternate_handling = Some(if a == "shifted" {
                AlternateHandling::Shifted
            } else {
                AlternateHandling::NonIgnorable
            });
        }
        if let Some(m) = &self.max_variable {
            options.max_variable = Some(if m == "space" {
                MaxVariable::Space
            } else {
                MaxVariable::Punctuation
            });
        }
        if let Some(c) = &self.case_first {
            prefs.case_first = Some(match c.as_str() {
                "upper" => CollationCaseFirst::Upper,
                "lower" => CollationCaseFirst::Lower,
                _ => CollationCaseFirst::False,
            });
        }
        if let Some(n) = self.numeric_ordering {
            prefs.numeric_ordering = Some(if n {
                CollationNumericOrdering::True
            } else {
                CollationNumericOrdering::False
            });
        }
        let mut collator = CollatorBorrowed::try_new(prefs, options).map_err(|_| invalid())?;
        // ICU4X does not report the backward secondary level; of the
        // locales compiled in, CLDR sets it for fr_CA only.
        let mut backwards = self.locale == "fr_CA";
        if let Some(want) = self.backwards
            && want != backwards
        {
            // See ROOT_LOCALES: the backward secondary level is a property
            // of a locale's data in ICU4X, not an option.
            if !(want && ROOT_LOCALES.contains(&self.locale.as_str())) {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!(
                        "collation option 'backwards: {want}' is not supported by Argon with locale '{}' (only backwards: true with en, en_US, fr and fr_CA)",
                        self.locale
                    ),
                ));
            }
            let mut fr_ca = preferences("fr-CA").ok_or_else(invalid)?;
            fr_ca.case_first = prefs.case_first;
            fr_ca.numeric_ordering = prefs.numeric_ordering;
            collator = CollatorBorrowed::try_new(fr_ca, options).map_err(|_| invalid())?;
            backwards = true;
        }
        let resolved = collator.resolved_options();
        let spec = doc! {
            "locale": self.locale.clone(),
            "caseLevel": resolved.case_level == CaseLevel::On,
            "caseFirst": match resolved.case_first {
                CollationCaseFirst::Upper => "upper",
                CollationCaseFirst::Lower => "lower",
                _ => "off",
            },
            "strength": match resolved.strength {
                Strength::Primary => 1,
                Strength::Secondary => 2,
                Strength::Tertiary => 3,
                Strength::Quaternary => 4,
                _ => 5,
            },
            "numericOrdering": resolved.numeric == CollationNumericOrdering::True,
            "alternate": match resolved.alternate_handling {
                AlternateHandling::Shifted => "shifted",
                _ => "non-ignorable",
            },
            "maxVariable": match resolved.max_variable {
                MaxVariable::Space => "space",
                _ => "punct",
            },
            // ICU4X always normalizes (NFD) before collating: for text in
            // FCD form (nearly all text) ICU's result with normalization
            // off is the same, and for other text normalizing is what
            // gives the correct order. The option is reported as asked.
            "normalization": self.normalization.unwrap_or(false),
            "backwards": backwards,
            "version": VERSION,
        };
        Ok(Collated { spec, collator })
    }
}

fn preferences(bcp47: &str) -> Option<CollatorPreferences> {
    let locale = icu_locale_core::Locale::try_from_str(bcp47).ok()?;
    Some(CollatorPreferences::from(&locale))
}

fn string(field: &str, v: &Bson) -> Result<String> {
    match v {
        Bson::String(s) => Ok(s.clone()),
        other => Err(wrong_type(field, other, "string")),
    }
}

fn boolean(field: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Boolean(b) => Ok(*b),
        other => Err(wrong_type(field, other, "bool")),
    }
}

fn integer(field: &str, v: &Bson) -> Result<i64> {
    match v {
        Bson::Int32(i) => Ok(i64::from(*i)),
        Bson::Int64(i) => Ok(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 1e15 => Ok(*d as i64),
        other => Err(wrong_type(field, other, "int")),
    }
}

fn wrong_type(field: &str, v: &Bson, expected: &str) -> CommandError {
    CommandError::type_mismatch(format!(
        "BSON field 'collation.{field}' is the wrong type '{}', expected type '{expected}'",
        super::expr::type_name(v)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    fn c(spec: Document) -> Collation {
        Collation::parse(&spec).unwrap()
    }

    /// MongoDB's documented collation examples, one row per comparison:
    /// (collation, a, b, expected order of a against b).
    #[test]
    fn documented_examples() {
        let rows: &[(Document, &str, &str, Ordering)] = &[
            // strength 1: base letters only ("cafe" = "Café").
            (doc! {"locale": "fr", "strength": 1}, "cafe", "Café", Equal),
            (doc! {"locale": "en", "strength": 1}, "a", "A", Equal),
            (doc! {"locale": "en", "strength": 1}, "a", "b", Less),
            // strength 2: diacritics count, case does not.
            (doc! {"locale": "fr", "strength": 2}, "cafe", "CAFE", Equal),
            (doc! {"locale": "fr", "strength": 2}, "cafe", "café", Less),
            (doc! {"locale": "en_US", "strength": 2}, "ABC", "abc", Equal),
            // strength 3 (the default): case counts, lower first.
            (doc! {"locale": "en"}, "a", "A", Less),
            (doc! {"locale": "en", "strength": 3}, "cafe", "Cafe", Less),
            // caseFirst upper puts capitals first (at strength 3).
            (doc! {"locale": "en", "caseFirst": "upper"}, "A", "a", Less),
            (doc! {"locale": "en", "caseFirst": "lower"}, "a", "A", Less),
            // caseLevel with strength 1: case counts, accents do not.
            (
                doc! {"locale": "en", "strength": 1, "caseLevel": true},
                "a",
                "A",
                Less,
            ),
            (
                doc! {"locale": "en", "strength": 1, "caseLevel": true},
                "e",
                "é",
                Equal,
            ),
            // numericOrdering: digits compare as numbers.
            (
                doc! {"locale": "en", "numericOrdering": true},
                "10",
                "2",
                Greater,
            ),
            (
                doc! {"locale": "en", "numericOrdering": true},
                "item 9",
                "item 10",
                Less,
            ),
            (
                doc! {"locale": "en", "numericOrdering": false},
                "10",
                "2",
                Less,
            ),
            // alternate shifted: spaces and punctuation ignored (strength < 4).
            (
                doc! {"locale": "en", "alternate": "shifted", "strength": 1},
                "black-bird",
                "blackbird",
                Equal,
            ),
            (
                doc! {"locale": "en", "alternate": "shifted", "strength": 1},
                "black bird",
                "blackbird",
                Equal,
            ),
            (
                doc! {"locale": "en", "alternate": "non-ignorable", "strength": 1},
                "black bird",
                "blackbird",
                Less,
            ),
            // maxVariable space: only spaces are shifted, punctuation stays.
            (
                doc! {"locale": "en", "alternate": "shifted", "maxVariable": "space", "strength": 1},
                "black bird",
                "blackbird",
                Equal,
            ),
            (
                doc! {"locale": "en", "alternate": "shifted", "maxVariable": "space", "strength": 1},
                "black-bird",
                "blackbird",
                Less,
            ),
            // strength 4 with shifted: the ignored characters break ties.
            (
                doc! {"locale": "en", "alternate": "shifted", "strength": 4},
                "black-bird",
                "blackbird",
                Less,
            ),
            // backwards: secondary differences compared from the end.
            (doc! {"locale": "fr", "strength": 2}, "cote", "côte", Less),
            // (cote < côte < coté < côté in a French dictionary).
            (
                doc! {"locale": "fr", "strength": 2},
                "côte",
                "coté",
                Greater,
            ),
            (
                doc! {"locale": "fr", "strength": 2, "backwards": true},
                "côte",
                "coté",
                Less,
            ),
            (
                doc! {"locale": "fr_CA", "strength": 2},
                "côte",
                "coté",
                Less,
            ),
            (
                doc! {"locale": "en", "strength": 2, "backwards": true},
                "côte",
                "coté",
                Less,
            ),
            // Locale tailorings: Swedish ä after z, German phonebook ä = ae.
            (doc! {"locale": "sv"}, "ä", "z", Greater),
            (doc! {"locale": "de"}, "ä", "z", Less),
            (
                doc! {"locale": "de@collation=phonebook", "strength": 1},
                "ä",
                "ae",
                Equal,
            ),
            (doc! {"locale": "de", "strength": 1}, "ä", "ae", Less),
            // Traditional Spanish: "ch" is a letter after "c".
            (
                doc! {"locale": "es@collation=traditional"},
                "chico",
                "cuna",
                Greater,
            ),
            (doc! {"locale": "es"}, "chico", "cuna", Less),
            // strength 5 (identical) tells apart what 4 does not.
            (doc! {"locale": "ja", "strength": 4}, "ア", "ｱ", Equal),
            (doc! {"locale": "ja", "strength": 5}, "ア", "ｱ", Less),
        ];
        for (spec, a, b, want) in rows {
            let coll = c(spec.clone());
            assert_eq!(coll.compare_str(a, b), *want, "{spec}: {a} vs {b}");
            // The comparison key agrees with the comparison.
            let (ka, kb) = (coll.key(&Bson::from(*a)), coll.key(&Bson::from(*b)));
            assert_eq!(
                crate::query::compare::compare(&ka, &kb),
                *want,
                "{spec}: keys of {a} vs {b}"
            );
        }
    }

    #[test]
    fn resolved_spec_fills_every_option() {
        let coll = c(doc! {"locale": "da"});
        let spec = coll.spec().unwrap();
        // Danish sorts capitals first by default.
        assert_eq!(spec.get_str("caseFirst").unwrap(), "upper");
        assert_eq!(spec.get_i32("strength").unwrap(), 3);
        assert_eq!(spec.get_str("version").unwrap(), VERSION);
        assert!(
            c(doc! {"locale": "fr_CA"})
                .spec()
                .unwrap()
                .get_bool("backwards")
                .unwrap()
        );
        assert_eq!(
            c(doc! {"locale": "th"})
                .spec()
                .unwrap()
                .get_str("alternate")
                .unwrap(),
            "shifted"
        );
        assert!(c(doc! {"locale": "simple"}).is_simple());
        assert!(c(doc! {"locale": "simple"}).spec().is_none());
    }

    #[test]
    fn every_listed_locale_builds() {
        for locale in LOCALES {
            let coll = Collation::parse(&doc! {"locale": *locale})
                .unwrap_or_else(|e| panic!("{locale}: {}", e.message));
            assert_eq!(coll.spec().unwrap().get_str("locale").unwrap(), *locale);
        }
    }

    #[test]
    fn invalid_collations_are_refused_with_mongodb_errors() {
        let err = |spec: Document| Collation::parse(&spec).unwrap_err();
        let e = err(doc! {"locale": "xx_YY"});
        assert_eq!(e.code, ErrorCode::BadValue);
        assert!(
            e.message.starts_with("Field 'locale' is invalid in: "),
            "{}",
            e.message
        );
        // Variants whose data is not compiled in are unknown locales.
        for l in [
            "de@collation=search",
            "zh@collation=big5han",
            "ko@collation=searchjl",
        ] {
            assert_eq!(err(doc! {"locale": l}).code, ErrorCode::BadValue, "{l}");
        }
        assert_eq!(err(doc! {"strength": 2}).code, ErrorCode::Location40414);
        assert_eq!(
            err(doc! {"locale": "en", "foo": 1}).code,
            ErrorCode::Location40415
        );
        assert_eq!(
            err(doc! {"locale": "en", "strength": 0}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "en", "strength": 6}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "en", "strength": "2"}).code,
            ErrorCode::TypeMismatch
        );
        assert_eq!(err(doc! {"locale": 5}).code, ErrorCode::TypeMismatch);
        assert_eq!(
            err(doc! {"locale": "en", "caseFirst": "x"}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "en", "alternate": "x"}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "en", "maxVariable": "x"}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "en", "version": "1.0"}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            err(doc! {"locale": "simple", "strength": 1}).code,
            ErrorCode::BadValue
        );
        // backwards where ICU4X cannot set it: refused by name, not ignored.
        let e = err(doc! {"locale": "sv", "backwards": true});
        assert_eq!(e.code, ErrorCode::CommandNotSupported);
        assert!(e.message.contains("backwards"));
        assert_eq!(
            err(doc! {"locale": "fr_CA", "backwards": false}).code,
            ErrorCode::CommandNotSupported
        );
        assert!(Collation::from_field(Some(&Bson::Int32(1))).is_err());
        assert_eq!(Collation::from_field(None).unwrap(), None);
    }

    #[test]
    fn a_scope_sets_the_comparison_and_restores_the_previous() {
        assert!(active_is_simple());
        assert_eq!(compare_strings("a", "B"), Greater);
        let outer = c(doc! {"locale": "en", "strength": 2});
        {
            let _s = outer.enter();
            assert_eq!(compare_strings("a", "A"), Equal);
            {
                let _inner = Collation::simple().enter();
                assert_eq!(compare_strings("a", "A"), Greater);
            }
            assert_eq!(compare_strings("a", "B"), Less);
            assert_eq!(
                comparison_key(&Bson::from("a")),
                comparison_key(&Bson::from("A"))
            );
        }
        assert!(active_is_simple());
        assert_eq!(compare_strings("a", "A"), Greater);
    }

    #[test]
    fn keys_reach_strings_at_any_depth_but_not_field_names() {
        let coll = c(doc! {"locale": "en", "strength": 1});
        let a = coll.key(&Bson::Document(doc! {"X": ["a", {"y": "B"}], "n": 1}));
        let b = coll.key(&Bson::Document(doc! {"X": ["A", {"y": "b"}], "n": 1}));
        assert_eq!(a, b);
        let d = coll.key(&Bson::Document(doc! {"x": ["a", {"y": "B"}], "n": 1}));
        assert_ne!(a, d);
        assert!(has_string(&Bson::Array(vec![
            Bson::Int32(1),
            Bson::from("s")
        ])));
        assert!(!has_string(&Bson::Document(doc! {"s": 1})));
    }
}
