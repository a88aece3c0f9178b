//! Parsing filters, updates, projections, sorts and pipelines from any BSON
//! document never panics, and neither does applying them.
#![no_main]

use argon_sidecar::query::aggregate::{InMemory, Pipeline};
use argon_sidecar::query::{Filter, Projection, SortSpec, UpdateSpec};
use bson::{Bson, Document, doc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = Document::from_reader(data) else { return };
    let sample = doc! {"_id": 1, "a": [1, {"b": "x"}], "c": {"d": 2.5}};
    if let Ok(f) = Filter::parse(&spec) {
        let _ = f.matches(&sample);
    }
    if let Ok(u) = UpdateSpec::parse(&Bson::Document(spec.clone())) {
        let _ = u.apply(&sample, false);
        let _ = argon_sidecar::query::update::upsert_document(&spec, &u);
    }
    if let Ok(p) = Projection::parse(&spec) {
        let _ = p.apply(&sample);
    }
    if let Ok(s) = SortSpec::parse(&spec) {
        let mut v = vec![sample.clone(), doc! {"_id": 2}];
        s.sort(&mut v);
    }
    let stages: Vec<Bson> = spec.iter().map(|(k, v)| Bson::Document(doc! {k: v.clone()})).collect();
    if let Ok(p) = Pipeline::parse(&stages) {
        let _ = p.run(vec![sample], &InMemory(Vec::new()));
    }
});
