//! The commit feed between sidecars: the branch's writer serves its recent
//! commits (`argonCommits` on its peer listener) and a forwarding sidecar
//! asks it first when it catches up (`argon_wal::feed`), so it need not
//! read back from the store every commit the writer just wrote there.

use std::sync::{Arc, OnceLock, Weak};

use argon_wal::{BranchId, CommitFeed, Seq};
use bson::{Binary, Bson, Document, RawDocumentBuf, doc, spec::BinarySubtype};
use futures::future::BoxFuture;

use super::Writers;
use crate::error::{CommandError, Result};
use crate::service::Service;

/// Body bytes one `argonCommits` reply carries at most (a reply is one BSON
/// document, under 16 MiB).
const REPLY_BYTES: usize = 8 << 20;

/// Asks the branch's writer, once this sidecar knows who it is.
#[derive(Default)]
pub struct WriterFeed {
    writers: OnceLock<Weak<Writers>>,
}

impl WriterFeed {
    /// Binds the feed to the service's writer election (after the WAL,
    /// which holds the feed, was opened).
    pub fn bind(&self, writers: &Arc<Writers>) {
        let _ = self.writers.set(Arc::downgrade(writers));
    }
}

impl CommitFeed for WriterFeed {
    fn commits_after<'a>(
        &'a self,
        branch: &'a str,
        id: BranchId,
        after: Seq,
    ) -> BoxFuture<'a, Option<Vec<RawDocumentBuf>>> {
        Box::pin(async move {
            let writers = self.writers.get()?.upgrade()?;
            let peer = writers.writer_of(branch)?;
            let reply = peer
                .forward(&doc! {
                    "argonCommits": id.0 as i64,
                    "after": after.0 as i64,
                    "$db": "admin",
                })
                .await
                .ok()?;
            let records = reply.get_array("commits").ok()?;
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                let Bson::Binary(b) = r else { return None };
                out.push(RawDocumentBuf::from_bytes(b.bytes.clone()).ok()?);
            }
            Some(out)
        })
    }

    fn defer_to_writer(&self, branch: &str) -> bool {
        self.writers
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|w| w.writer_of(branch).is_some())
    }
}

/// `argonCommits: <branch id>, after: <seq>` from another sidecar's feed:
/// this sidecar's recent commits of that branch incarnation after `after`
/// (`commits: []` when it has nothing newer, `found: false` when it does
/// not hold the commit after `after`).
pub fn serve(svc: &Service, cmd: &Document) -> Result<Document> {
    let number = |key: &str| -> Result<u64> {
        match cmd.get(key) {
            Some(Bson::Int64(n)) if *n >= 0 => Ok(*n as u64),
            Some(Bson::Int32(n)) if *n >= 0 => Ok(*n as u64),
            _ => Err(CommandError::failed_to_parse(format!(
                "argonCommits needs a non-negative integer '{key}'"
            ))),
        }
    };
    let (id, after) = (BranchId(number("argonCommits")?), Seq(number("after")?));
    let recent = svc
        .wal
        .recent_commits(id, after, REPLY_BYTES)
        .map_err(crate::wal_error::from_wal)?;
    let found = recent.is_some();
    let commits: Vec<Bson> = recent
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: r.into_bytes(),
            })
        })
        .collect();
    Ok(doc! {"commits": commits, "found": found, "ok": 1.0})
}
