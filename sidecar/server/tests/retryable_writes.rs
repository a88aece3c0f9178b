//! Retryable writes against the real binary, sent as drivers send them
//! (`lsid` + `txnNumber` on insert/update/delete/findAndModify): a retry is
//! answered with the first reply and applied once, in the same process,
//! after kill -9 and a restart, and through another sidecar on the same
//! log. A write that changed nothing is not re-run on a changed state;
//! an older txnNumber than the session's latest is refused (225).

use crate::common;

use argon_testkit::FerretDb;
use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use common::RawClient;
use common::sidecar::Sidecar;

fn lsid(n: u8) -> Document {
    doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![n; 16] }}
}

/// `cmd` as a retryable write of session `s`, txnNumber `t`.
fn retryable(mut cmd: Document, s: u8, t: i64) -> Document {
    cmd.insert("lsid", lsid(s));
    cmd.insert("txnNumber", t);
    cmd.insert("$db", "app");
    cmd
}

/// The reply without the fields that may differ between two answers of one
/// write (cluster time, and the operation time a driver does not compare).
fn answer(mut reply: Document) -> Document {
    reply.remove("$clusterTime");
    reply.remove("operationTime");
    reply
}

async fn count(c: &mut RawClient, filter: Document) -> i64 {
    let r = c
        .command(doc! {"count": "items", "query": filter, "$db": "app"})
        .await;
    match r.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => panic!("count failed: {r}"),
    }
}

fn ok(r: &Document) -> bool {
    matches!(r.get("ok"), Some(Bson::Double(v)) if *v == 1.0)
        || matches!(r.get("ok"), Some(Bson::Int32(1)))
}

async fn raw(s: &Sidecar) -> RawClient {
    RawClient::connect(([127, 0, 0, 1], s.port).into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_once_across_a_kill_9() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut sidecar = Sidecar::standalone(dir.path())
        .await
        .expect("the sidecar starts");
    let mut c = raw(&sidecar).await;

    let insert = retryable(
        doc! {"insert": "items", "documents": [{"_id": 1, "n": 0}]},
        1,
        1,
    );
    let first = c.command(insert.clone()).await;
    assert!(ok(&first), "{first}");
    let again = c.command(insert.clone()).await;
    assert_eq!(
        answer(again),
        answer(first.clone()),
        "a retry gets the first reply"
    );

    let fam = retryable(
        doc! {"findAndModify": "items", "query": {"_id": 1}, "update": {"$inc": {"n": 1}}, "new": true},
        3,
        1,
    );
    let fam_first = c.command(fam.clone()).await;
    assert_eq!(
        fam_first.get_document("value").unwrap().get_i32("n").ok(),
        Some(1),
        "{fam_first}"
    );

    // A delete that matches nothing, logged as such.
    let delete = retryable(
        doc! {"delete": "items", "deletes": [{"q": {"_id": "later"}, "limit": 1}]},
        4,
        1,
    );
    let del_first = c.command(delete.clone()).await;
    assert_eq!(del_first.get_i32("n").ok(), Some(0), "{del_first}");

    let upsert = retryable(
        doc! {"update": "items", "updates": [{"q": {"_id": "u"}, "u": {"$inc": {"n": 1}}, "upsert": true}]},
        2,
        1,
    );
    let up_first = c.command(upsert.clone()).await;
    assert!(up_first.get_array("upserted").is_ok(), "{up_first}");

    sidecar.kill();
    drop(c);
    let sidecar = Sidecar::standalone(dir.path())
        .await
        .expect("the sidecar restarts");
    let mut c = raw(&sidecar).await;
    // Now `_id: "later"` exists: a re-run of the delete would remove it.
    let plain = doc! {"insert": "items", "documents": [{"_id": "later"}], "$db": "app"};
    assert!(ok(&c.command(plain).await));

    assert_eq!(answer(c.command(insert).await), answer(first));
    assert_eq!(answer(c.command(fam).await), answer(fam_first));
    assert_eq!(answer(c.command(delete).await), answer(del_first));
    assert_eq!(answer(c.command(upsert).await), answer(up_first));
    assert_eq!(count(&mut c, doc! {"_id": "later"}).await, 1);
    let r = c
        .command(doc! {"find": "items", "filter": {}, "sort": {"_id": 1}, "$db": "app"})
        .await;
    let docs = r
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a cursor")
        .clone();
    assert_eq!(
        docs,
        vec![
            Bson::Document(doc! {"_id": 1, "n": 1}),
            Bson::Document(doc! {"_id": "later"}),
            Bson::Document(doc! {"_id": "u", "n": 1}),
        ],
        "each write applied exactly once"
    );

    // A session keeps its latest write (as MongoDB's config.transactions):
    // once it has moved on, an older txnNumber may not run again.
    let next = retryable(doc! {"insert": "items", "documents": [{"_id": 2}]}, 1, 2);
    assert!(ok(&c.command(next).await));
    let stale = retryable(doc! {"insert": "items", "documents": [{"_id": 99}]}, 1, 0);
    let r = c.command(stale).await;
    assert_eq!(r.get_i32("code").ok(), Some(225), "{r}");
    assert_eq!(count(&mut c, doc! {"_id": 99}).await, 0);
}

/// Two sidecars on one log (two pods of one branch): a driver that lost
/// its connection to one retries through the other, which answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_sidecar_is_answered() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let a = Sidecar::on_store("sidecar-a", ferretdb.uri(), "retry")
        .await
        .expect("sidecar a starts");
    let b = Sidecar::on_store("sidecar-b", ferretdb.uri(), "retry")
        .await
        .expect("sidecar b starts");
    let (mut ca, mut cb) = (raw(&a).await, raw(&b).await);
    // b has loaded the branch head before a's write.
    assert!(ok(&cb
        .command(doc! {"insert": "items", "documents": [{"_id": 0}], "$db": "app"})
        .await));
    let upd = retryable(
        doc! {"update": "items", "updates": [{"q": {"_id": 0}, "u": {"$inc": {"n": 1}}}]},
        7,
        1,
    );
    let first = ca.command(upd.clone()).await;
    assert_eq!(first.get_i32("nModified").ok(), Some(1), "{first}");
    let via_b = cb.command(upd).await;
    assert_eq!(answer(via_b), answer(first));
    let r = cb
        .command(doc! {"find": "items", "filter": {"_id": 0}, "$db": "app"})
        .await;
    let n = r
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a cursor")
        .first()
        .and_then(Bson::as_document)
        .and_then(|d| d.get_i32("n").ok());
    assert_eq!(n, Some(1), "applied once: {r}");
}
