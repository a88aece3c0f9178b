//! Which `{$meta: ...}` each stage of a pipeline may read, decided when
//! the pipeline is parsed: the one list of what each stage does to the
//! metadata of the documents it passes on (`query::meta`).
//!
//! mongod keeps a document's metadata through every stage that passes the
//! document on and starts the documents a stage makes anew bare, where
//! `{$meta: ...}` is missing. Argon does the same at run time
//! (`Pipeline::stream`), except through the stages that hold and rebuild
//! their input (`$setWindowFields`, `$densify`, `$fill`): their documents
//! come out bare here while mongod's keep their metadata, so reading
//! metadata lost there is refused by name (115) rather than answered
//! missing. A `$facet` sub-pipeline starts with its input's metadata, as
//! the stage before `$facet` left it; a `$lookup` or `$unionWith` one with
//! another collection's bare documents (but for the index key, which
//! mongod's plan for them may attach and Argon's does not).
//!
//! Where a metadata name needs its producer (`textScore` a leading `$text`,
//! the geo ones a leading `$geoNear`), reading it anywhere else is mongod's
//! 40218, whatever the stage.

use bson::Bson;

use super::super::meta::{self, MetaName};
use crate::error::{CommandError, ErrorCode, Result};

/// What a stage does to its documents' metadata.
enum Effect {
    /// Passes each document on with its metadata.
    Keeps,
    /// Keeps it and attaches these.
    Attaches(&'static [MetaName]),
    /// Makes new documents, bare in mongod as here.
    NewDocuments,
    /// Holds and rebuilds its documents: mongod keeps their metadata,
    /// Argon does not.
    NotCarried,
}

fn effect(stage: &str) -> Effect {
    match stage {
        "$match" | "$project" | "$addFields" | "$set" | "$unset" | "$replaceRoot"
        | "$replaceWith" | "$skip" | "$limit" | "$unwind" | "$lookup" | "$redact"
        | "$graphLookup" | "$unionWith" => Effect::Keeps,
        "$sort" => Effect::Attaches(&[MetaName::SortKey]),
        "$sample" => Effect::Attaches(&[MetaName::RandVal]),
        "$geoNear" => Effect::Attaches(&[MetaName::GeoNearDistance, MetaName::GeoNearPoint]),
        // `$sortByCount` and `$bucket` are `$group` then `$sort`: new
        // documents with a sort key (in mongod as here).
        "$group" | "$bucket" | "$bucketAuto" | "$count" | "$facet" | "$documents"
        | "$sortByCount" => Effect::NewDocuments,
        // `$setWindowFields`, `$densify`, `$fill`, and any stage not
        // listed: nothing is assumed to survive it.
        _ => Effect::NotCarried,
    }
}

/// Every name Argon produces.
const PRODUCED: [MetaName; 6] = [
    MetaName::TextScore,
    MetaName::RandVal,
    MetaName::SortKey,
    MetaName::GeoNearDistance,
    MetaName::GeoNearPoint,
    MetaName::IndexKey,
];

/// The metadata a pipeline has at a point of its parse.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    /// What mongod would have here that Argon does not carry, and where it
    /// was lost.
    lost: Vec<MetaName>,
    lost_at: &'static str,
    /// Whether the documents come from a leading `$text` (their score) and
    /// a leading `$geoNear` (distance and point): mongod's 40218 otherwise.
    text: bool,
    geo_near: bool,
}

impl Flow {
    /// A top-level pipeline's: what its first stage produces.
    pub(super) fn top(stages: &[Bson]) -> Flow {
        let first = match stages.first() {
            Some(Bson::Document(d)) => Some(d),
            _ => None,
        };
        Flow {
            lost: Vec::new(),
            lost_at: "",
            text: first.is_some_and(|d| {
                matches!(d.get("$match"), Some(Bson::Document(f)) if super::super::text::mentions_text(f))
            }),
            geo_near: first.is_some_and(|d| d.contains_key("$geoNear")),
        }
    }

    /// A `$lookup` or `$unionWith` sub-pipeline's: another collection's
    /// documents, bare, as in mongod, but for the index key mongod's plan
    /// for them may attach, which Argon's does not.
    pub(super) fn foreign() -> Flow {
        Flow {
            lost: vec![MetaName::IndexKey],
            lost_at: "the start of a $lookup or $unionWith sub-pipeline",
            text: false,
            geo_near: false,
        }
    }

    /// Checks what the stage `name` reads, then applies what it does.
    pub(super) fn stage(&mut self, name: &str, arg: &Bson) -> Result<()> {
        // Sub-pipelines (`$facet`, `$lookup`, `$unionWith`) are checked
        // when they are parsed (`$facet`'s from this point of the flow).
        if !matches!(name, "$facet" | "$lookup" | "$unionWith") {
            let mut read = Vec::new();
            meta::mentioned(arg, &mut read);
            for m in read {
                self.check(m)?;
            }
        }
        // These evaluate their outputs on the documents they hold, whose
        // metadata they do not keep (`$graphLookup` its filter on the
        // documents it finds, which have none in mongod).
        let on_held = match (name, arg) {
            ("$setWindowFields" | "$bucketAuto", Bson::Document(d)) => {
                d.get("output").map(|v| ("output", v))
            }
            ("$graphLookup", Bson::Document(d)) => d
                .get("restrictSearchWithMatch")
                .map(|v| ("restrictSearchWithMatch", v)),
            ("$fill" | "$densify", _) => Some(("specification", arg)),
            _ => None,
        };
        let mut read = Vec::new();
        if let Some((_, v)) = on_held {
            meta::mentioned(v, &mut read);
        }
        if let (Some(m), Some((field, _))) = (read.first(), on_held) {
            return Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                format!(
                    "{{$meta: \"{}\"}} in the {field} of {name} is not supported by Argon (it computes it over documents without their metadata)",
                    m.as_str()
                ),
            ));
        }
        match effect(name) {
            Effect::Keeps => {}
            Effect::Attaches(names) => self.lost.retain(|m| !names.contains(m)),
            Effect::NewDocuments => self.lost.clear(),
            Effect::NotCarried => {
                self.lost = PRODUCED.to_vec();
                self.lost_at = match name {
                    "$setWindowFields" => "$setWindowFields",
                    "$densify" => "$densify",
                    "$fill" => "$fill",
                    _ => "this stage",
                };
            }
        }
        Ok(())
    }

    /// Whether `{$meta: m}` may be read here.
    fn check(&self, m: MetaName) -> Result<()> {
        let missing_producer = match m {
            MetaName::TextScore if !self.text => Some("text score"),
            MetaName::GeoNearDistance if !self.geo_near => Some("$geoNear distance"),
            MetaName::GeoNearPoint if !self.geo_near => Some("$geoNear point"),
            _ => None,
        };
        if let Some(what) = missing_producer {
            return Err(CommandError::new(
                ErrorCode::Location40218,
                format!("query requires {what} metadata, but it is not available"),
            ));
        }
        if self.lost.contains(&m) {
            return Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                format!(
                    "{{$meta: \"{}\"}} after {} is not supported by Argon (it does not carry document metadata through it)",
                    m.as_str(),
                    self.lost_at
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    fn run(stages: &[(&str, Bson)], mut flow: Flow) -> Result<()> {
        for (name, arg) in stages {
            flow.stage(name, arg)?;
        }
        Ok(())
    }

    #[test]
    fn lost_metadata_is_refused_until_attached_again() {
        let top = || Flow::top(&[]);
        let read = |m: &str| bson!({"x": {"$meta": m}});
        assert!(
            run(
                &[("$sort", bson!({"a": 1})), ("$project", read("sortKey"))],
                top()
            )
            .is_ok()
        );
        assert!(
            run(
                &[("$group", bson!({"_id": 1})), ("$project", read("randVal"))],
                top()
            )
            .is_ok()
        );
        let e = run(
            &[
                ("$setWindowFields", bson!({})),
                ("$project", read("sortKey")),
            ],
            top(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::CommandNotSupported);
        assert!(e.message.contains("sortKey") && e.message.contains("$setWindowFields"));
        // A `$sort` attaches a sort key again, not the index key.
        assert!(
            run(
                &[
                    ("$densify", bson!({})),
                    ("$sort", bson!({"a": 1})),
                    ("$addFields", read("sortKey"))
                ],
                top()
            )
            .is_ok()
        );
        assert!(
            run(
                &[
                    ("$fill", bson!({})),
                    ("$sort", bson!({"a": 1})),
                    ("$addFields", read("indexKey"))
                ],
                top()
            )
            .is_err()
        );
        // New documents: missing in mongod as here.
        assert!(
            run(
                &[
                    ("$fill", bson!({})),
                    ("$count", bson!("n")),
                    ("$project", read("randVal"))
                ],
                top()
            )
            .is_ok()
        );
        // Another collection's documents: bare, but for the index key.
        assert!(run(&[("$project", read("randVal"))], Flow::foreign()).is_ok());
        assert!(run(&[("$project", read("indexKey"))], Flow::foreign()).is_err());
        // Outputs computed over held documents.
        for (stage, arg) in [
            (
                "$setWindowFields",
                bson!({"output": {"s": {"$sum": {"$meta": "sortKey"}}}}),
            ),
            (
                "$bucketAuto",
                bson!({"groupBy": "$a", "output": {"s": {"$max": {"$meta": "randVal"}}}}),
            ),
            (
                "$fill",
                bson!({"output": {"a": {"value": {"$meta": "randVal"}}}}),
            ),
        ] {
            let e = run(&[("$sort", bson!({"a": 1})), (stage, arg)], top()).unwrap_err();
            assert_eq!(e.code, ErrorCode::CommandNotSupported);
            assert!(e.message.contains(stage), "{}", e.message);
        }
        // Its key is computed as each document is read.
        assert!(
            run(
                &[
                    ("$sort", bson!({"a": 1})),
                    ("$bucketAuto", bson!({"groupBy": {"$meta": "sortKey"}}))
                ],
                top()
            )
            .is_ok()
        );
        // Sub-pipelines are checked on their own.
        assert!(
            run(
                &[
                    ("$setWindowFields", bson!({})),
                    ("$facet", bson!({"a": [{"$project": read("sortKey")}]}))
                ],
                top()
            )
            .is_ok()
        );
    }

    #[test]
    fn producers_are_the_first_stage() {
        let read = |m: &str| bson!({"x": {"$meta": m}});
        let text = [bson!({"$match": {"$text": {"$search": "x"}}})];
        let geo = [bson!({"$geoNear": {}})];
        for (first, m, ok) in [
            (&text[..], "textScore", true),
            (&geo[..], "textScore", false),
            (&geo[..], "geoNearDistance", true),
            (&geo[..], "geoNearPoint", true),
            (&text[..], "geoNearPoint", false),
            (&[][..], "geoNearDistance", false),
        ] {
            let got = run(
                &[("$group", bson!({"_id": null})), ("$project", read(m))],
                Flow::top(first),
            );
            assert_eq!(got.is_ok(), ok, "{m} after {first:?}");
            if let Err(e) = got {
                assert_eq!(e.code, ErrorCode::Location40218);
            }
        }
        assert_eq!(
            run(&[("$project", read("textScore"))], Flow::foreign())
                .unwrap_err()
                .code,
            ErrorCode::Location40218
        );
    }
}
