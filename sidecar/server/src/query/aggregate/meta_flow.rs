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
//! missing. A sub-pipeline starts the same way: `$facet`'s would see its
//! input's metadata, which Argon does not hand down.
//!
//! Where a metadata name needs its producer (`textScore` a leading `$text`,
//! the geo ones a leading `$geoNear`: 40218), the pipeline's parse checks
//! it (`aggregate::check_text_score`, `aggregate::check_geo_metadata`).

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

/// The metadata a pipeline has at a point of its parse.
pub(super) struct Flow {
    /// What mongod would have here that Argon does not carry, and where it
    /// was lost.
    lost: Vec<MetaName>,
    lost_at: &'static str,
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

impl Flow {
    pub(super) fn new(sub_pipeline: bool) -> Flow {
        if sub_pipeline {
            Flow {
                lost: PRODUCED.to_vec(),
                lost_at: "a sub-pipeline",
            }
        } else {
            Flow {
                lost: Vec::new(),
                lost_at: "",
            }
        }
    }

    /// Checks what the stage `name` reads, then applies what it does.
    pub(super) fn stage(&mut self, name: &str, arg: &Bson) -> Result<()> {
        // Sub-pipelines (`$facet`, `$lookup`, `$unionWith`) are checked
        // when they are parsed.
        if !matches!(name, "$facet" | "$lookup" | "$unionWith") {
            let mut read = Vec::new();
            meta::mentioned(arg, &mut read);
            if let Some(m) = read.iter().find(|m| self.lost.contains(m)) {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!(
                        "{{$meta: \"{}\"}} after {} is not supported by Argon (it does not carry document metadata through it)",
                        m.as_str(),
                        self.lost_at
                    ),
                ));
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    fn run(stages: &[(&str, Bson)], sub: bool) -> Result<()> {
        let mut flow = Flow::new(sub);
        for (name, arg) in stages {
            flow.stage(name, arg)?;
        }
        Ok(())
    }

    #[test]
    fn lost_metadata_is_refused_until_attached_again() {
        let read = |m: &str| bson!({"x": {"$meta": m}});
        assert!(
            run(
                &[("$sort", bson!({"a": 1})), ("$project", read("sortKey"))],
                false
            )
            .is_ok()
        );
        assert!(
            run(
                &[
                    ("$group", bson!({"_id": 1})),
                    ("$project", read("textScore"))
                ],
                false
            )
            .is_ok()
        );
        let e = run(
            &[
                ("$setWindowFields", bson!({})),
                ("$project", read("sortKey")),
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::CommandNotSupported);
        assert!(e.message.contains("sortKey") && e.message.contains("$setWindowFields"));
        // A `$sort` attaches a sort key again, not the text score.
        assert!(
            run(
                &[
                    ("$densify", bson!({})),
                    ("$sort", bson!({"a": 1})),
                    ("$addFields", read("sortKey"))
                ],
                false
            )
            .is_ok()
        );
        assert!(
            run(
                &[
                    ("$fill", bson!({})),
                    ("$sort", bson!({"a": 1})),
                    ("$addFields", read("textScore"))
                ],
                false
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
                false
            )
            .is_ok()
        );
        // A sub-pipeline reads only what its own stages attach.
        assert!(run(&[("$project", read("randVal"))], true).is_err());
        assert!(
            run(
                &[
                    ("$sample", bson!({"size": 1})),
                    ("$project", read("randVal"))
                ],
                true
            )
            .is_ok()
        );
        // Sub-pipelines are checked on their own.
        assert!(
            run(
                &[
                    ("$setWindowFields", bson!({})),
                    (
                        "$facet",
                        bson!({"a": [{"$sort": {"a": 1}}, {"$project": read("sortKey")}]})
                    )
                ],
                false
            )
            .is_ok()
        );
    }
}
