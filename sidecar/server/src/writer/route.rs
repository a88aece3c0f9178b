//! Which requests go to the branch's writer, and what a failed forward
//! turns into. Called by `commands::answer` for every request a client (not
//! a peer) sends.
//!
//! Forwarded: write commands outside transactions (their branch has a
//! writer elsewhere), and every statement of a transaction that *began*
//! while its branch had a writer elsewhere: the transaction is pinned to
//! that writer, as mongos pins one to a shard, so its reads, writes and
//! commit all run on one snapshot there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::Document;

use super::{ForwardError, Peer, Route, lost_reply, transaction_lost_reply};
use crate::error::Result;
use crate::service::Service;

/// A pinned transaction is forgotten this long after its last statement
/// (well past any transaction's lifetime limit).
const PIN_IDLE: Duration = Duration::from_secs(30 * 60);

/// A transaction statement's identity, as `commands::transaction` parsed it.
pub struct TxnStatement<'a> {
    pub session: &'a [u8],
    pub txn_number: i64,
    pub start: bool,
}

/// A transaction: its session id and txnNumber.
type TxnKey = (Vec<u8>, i64);

/// Transactions pinned to a writer elsewhere, and when each was last used.
#[derive(Default)]
pub struct Pins {
    map: Mutex<HashMap<TxnKey, (Arc<Peer>, Instant)>>,
}

impl Pins {
    fn get(&self, session: &[u8], txn_number: i64) -> Option<Arc<Peer>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get_mut(&(session.to_vec(), txn_number))?;
        entry.1 = Instant::now();
        Some(Arc::clone(&entry.0))
    }

    fn pin(&self, session: &[u8], txn_number: i64, peer: Arc<Peer>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, used)| used.elapsed() < PIN_IDLE);
        // A session runs one transaction at a time: a new number ends the old pin.
        map.retain(|(s, _), _| s.as_slice() != session);
        map.insert((session.to_vec(), txn_number), (peer, Instant::now()));
    }

    fn unpin(&self, session: &[u8], txn_number: i64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(session.to_vec(), txn_number));
    }
}

/// The writer's reply when `req` goes to it; `None` when it runs here.
pub async fn forward_if_remote(
    svc: &Service,
    command: &Document,
    db: &str,
    name: &str,
    writes: bool,
    statement: Option<TxnStatement<'_>>,
) -> Result<Option<Document>> {
    let writers = &svc.writers;
    if !writers.enabled() {
        return Ok(None);
    }
    if let Some(st) = statement {
        let peer = if st.start {
            let branch = svc.target(db)?.branch;
            match writers.route(&branch).await {
                Route::Local => return Ok(None),
                Route::Forward(peer) => {
                    svc.pins.pin(st.session, st.txn_number, Arc::clone(&peer));
                    peer
                }
            }
        } else {
            match svc.pins.get(st.session, st.txn_number) {
                Some(peer) => peer,
                None => return Ok(None),
            }
        };
        let end = matches!(name, "commitTransaction" | "abortTransaction");
        let branch = svc.target(db).map(|t| t.branch).unwrap_or_default();
        svc.metrics.forwarded_to_writer(&branch);
        let reply = match peer.forward(command).await {
            Ok(reply) => reply,
            Err(e) => {
                svc.metrics.forward_failures.inc();
                tracing::warn!(error = %e, command = name, "a transaction's writer went away");
                svc.pins.unpin(st.session, st.txn_number);
                return Ok(Some(transaction_lost_reply(
                    &e,
                    name == "commitTransaction",
                )));
            }
        };
        if end {
            svc.pins.unpin(st.session, st.txn_number);
            if name == "commitTransaction" {
                read_your_write(svc, &branch, &reply).await;
            }
        }
        return Ok(Some(reply));
    }
    if !writes {
        return Ok(None);
    }
    let target = svc.target(db)?;
    if target.at.is_some() || svc.read_only {
        // Refused here, with this server's error.
        return Ok(None);
    }
    let Route::Forward(peer) = writers.route(&target.branch).await else {
        return Ok(None);
    };
    svc.metrics.forwarded_to_writer(&target.branch);
    match peer.forward(command).await {
        Ok(reply) => {
            read_your_write(svc, &target.branch, &reply).await;
            Ok(Some(reply))
        }
        Err(e @ ForwardError::NotSent { .. }) => {
            writers.unreachable(&target.branch, &e);
            Ok(None)
        }
        Err(e @ ForwardError::Lost { .. }) => {
            writers.unreachable(&target.branch, &e);
            // With a retry key the log applies a write at most once, so
            // running it here is safe (and answers it if it landed there).
            if crate::retry::key_of(command).is_some() {
                Ok(None)
            } else {
                Ok(Some(lost_reply(&e)))
            }
        }
    }
}

/// A forwarded write's commit is one every later read through this
/// sidecar must see: the next read catches up to it (not this write, so a
/// write-only load costs no catch-ups here).
async fn read_your_write(svc: &Service, branch: &str, reply: &Document) {
    let Some(time) = reply.get("operationTime") else {
        return;
    };
    let Ok(time) = crate::target::commit_time(time) else {
        return;
    };
    if let Err(e) = svc.wal.expect_visible(branch, time) {
        tracing::debug!(%branch, error = %e, "noting a forwarded write");
    }
}
