//! Aggregation expression operators through the Rust driver against the
//! real binary, one module per family (the families of
//! `src/query/expr/`): answers as MongoDB's manual gives them, in `$project`,
//! `$addFields` and `find`'s `$expr`, and MongoDB's codes for errors.

use crate::common;

mod binder;
mod date;
mod math;
mod string;

use bson::Document;
use futures::TryStreamExt;
use mongodb::Database;

/// `pipeline` over `coll`'s documents.
pub async fn aggregate(db: &Database, coll: &str, pipeline: Vec<Document>) -> Vec<Document> {
    db.collection::<Document>(coll)
        .aggregate(pipeline)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents")
}
