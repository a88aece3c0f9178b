//! Catalog appends, committed in groups.
//!
//! Every change to a project's branches and users is a catalog record at
//! the next catalog seq, and the catalog lock is held across the store's
//! round trip (the record's seq and what `make` checked must not move under
//! it). One append per lock turn made a burst serial: an operator creating
//! 200 branches at once waited 200 store round trips, one after another.
//! So a caller queues its request and then takes the lock; whoever holds
//! it appends every request queued by then in one store call (consecutive
//! seqs, each event built on the catalog with the ones before it applied),
//! and the callers behind it find their answers ready when their turn
//! comes.
//!
//! Invariants (as for a single append, which this generalises):
//! - an event is built from a catalog that holds every record before its
//!   seq (the store accepts seq `n + 1` only if nobody took it, and the
//!   catalog has no holes), so an accepted record always follows what its
//!   `make` saw;
//! - a refusal or "nothing to do" is not checked by the store, so it is
//!   answered only from a catalog refreshed since that call began, and
//!   only once every record before it in the group is stored (it may
//!   depend on them: a second creation of one name);
//! - every queued request is answered exactly once, whatever fails.

use super::{Inner, lock};
use crate::catalog::Catalog;
use crate::error::{Result, WalError};
use crate::record::{CatalogEvent, CatalogRecord};
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::oneshot;

/// Builds a request's event from the catalog as it will be when its record
/// is appended: `Ok(None)` when nothing needs appending, `Err` a refusal.
/// It may be called more than once (after a conflict or a refresh).
pub(super) type MakeEvent = Box<dyn FnMut(&Catalog) -> Result<Option<CatalogEvent>> + Send>;

type Answer = Result<Option<CatalogEvent>>;

struct Request {
    make: MakeEvent,
    requested: Instant,
    reply: oneshot::Sender<Answer>,
}

impl Request {
    fn answer(self, answer: Answer) {
        // The caller may have gone (its future dropped): nobody to tell.
        let _ = self.reply.send(answer);
    }
}

/// Requests whose records go in one store call, with those records.
type Group = Vec<(Request, CatalogRecord)>;

/// Requests waiting for the catalog lock's holder.
#[derive(Default)]
pub(super) struct CatalogQueue(std::sync::Mutex<Vec<Request>>);

/// The most records one store call carries (a burst beyond it takes more
/// round trips, never a larger one).
const MAX_GROUP: usize = 256;

impl Inner {
    /// Appends the event `make` builds from the current catalog (see the
    /// module's invariants); on a catalog conflict refreshes and asks again.
    /// Optimistic, like a commit: the first attempt uses the catalog in
    /// memory without asking the store what is new.
    pub(super) async fn append_catalog(
        &self,
        make: impl FnMut(&Catalog) -> Result<Option<CatalogEvent>> + Send + 'static,
    ) -> Answer {
        let (reply, mut answer) = oneshot::channel();
        lock(&self.catalog_queue.0).push(Request {
            make: Box::new(make),
            requested: Instant::now(),
            reply,
        });
        let mut cat = self.catalog.lock().await;
        // Requests are only taken with the lock held: ours is either still
        // queued or was answered by a holder before us.
        if let Ok(done) = answer.try_recv() {
            return done;
        }
        let queued = std::mem::take(&mut *lock(&self.catalog_queue.0));
        self.append_group(&mut cat, queued.into()).await;
        drop(cat);
        answer
            .await
            .unwrap_or(Err(WalError::Closed("the catalog append was not answered")))
    }

    /// Answers every request of `waiting`, appending their events in as
    /// few store calls as the invariants allow.
    async fn append_group(&self, cat: &mut Catalog, mut waiting: VecDeque<Request>) {
        while !waiting.is_empty() {
            let (group, deferred) = self.next_group(cat, &mut waiting);
            let Some(oldest) = deferred.iter().map(|r| r.requested).min() else {
                // Nothing deferred: the group holds at least one request.
                self.store_group(cat, group, &mut waiting).await;
                continue;
            };
            // The deferred go first in the next round: after this group is
            // stored (accepted whole, the catalog is fresh for every request
            // queued before it was sent), or after a refresh if it is empty.
            let stored = if group.is_empty() {
                self.refresh_since(cat, oldest).await
            } else {
                self.store_group(cat, group, &mut waiting).await;
                Ok(())
            };
            for request in deferred.into_iter().rev() {
                waiting.push_front(request);
            }
            if let Err(e) = stored {
                answer_all(std::mem::take(&mut waiting), &e);
            }
        }
    }

    /// Appends `group` in one store call and answers what the store
    /// accepted; what it did not goes back to the front of `waiting`, built
    /// again after a refresh (another process took the next seq). A store
    /// error answers the whole group.
    async fn store_group(&self, cat: &mut Catalog, group: Group, waiting: &mut VecDeque<Request>) {
        let records: Vec<CatalogRecord> = group.iter().map(|(_, rec)| rec.clone()).collect();
        let sent = Instant::now();
        let accepted = match self.store.append_catalog(self.project(), &records).await {
            Ok(accepted) => accepted.min(group.len()),
            Err(WalError::CatalogConflict { .. }) => 0,
            Err(e) => {
                answer_all(group.into_iter().map(|(r, _)| r), &e);
                return;
            }
        };
        let mut group = group.into_iter();
        for (request, rec) in group.by_ref().take(accepted) {
            match cat.apply(&rec) {
                Ok(()) => request.answer(Ok(Some(rec.event))),
                Err(e) => request.answer(Err(e)),
            }
        }
        let rest: Vec<Request> = group.map(|(request, _)| request).collect();
        if rest.is_empty() {
            // Accepted at seq + 1 onwards: the store had nothing newer when
            // the group was sent.
            *lock(&self.catalog_fresh) = Some(sent);
            return;
        }
        for request in rest.into_iter().rev() {
            waiting.push_front(request);
        }
        if let Err(e) = self.refresh(cat).await {
            answer_all(std::mem::take(waiting), &e);
        }
    }

    /// Takes from `waiting` the requests whose events go in the next store
    /// call, with their records (each event built on `cat` with the records
    /// before it applied), and the requests with nothing to append that
    /// cannot be answered yet (deferred: the catalog was not refreshed since
    /// they asked, or records before them are not stored yet). A request
    /// with nothing to append is answered here when neither holds.
    fn next_group(&self, cat: &Catalog, waiting: &mut VecDeque<Request>) -> (Group, Vec<Request>) {
        let mut next = cat.clone();
        let time = self.options.clock.now();
        let mut group = Vec::new();
        let mut deferred = Vec::new();
        while group.len() < MAX_GROUP {
            let Some(mut request) = waiting.pop_front() else {
                break;
            };
            match (request.make)(&next) {
                Ok(Some(event)) => {
                    let rec = CatalogRecord {
                        seq: next.seq.next(),
                        time,
                        event,
                    };
                    if let Err(e) = next.apply(&rec) {
                        request.answer(Err(e));
                        continue;
                    }
                    group.push((request, rec));
                }
                answer => {
                    let fresh = lock(&self.catalog_fresh).is_some_and(|t| t >= request.requested);
                    if group.is_empty() && fresh {
                        request.answer(answer);
                    } else {
                        deferred.push(request);
                    }
                }
            }
        }
        (group, deferred)
    }
}

/// Answers every request with `e` (see `WalError::for_each_request`).
fn answer_all(requests: impl IntoIterator<Item = Request>, e: &WalError) {
    for request in requests {
        request.answer(Err(e.for_each_request()));
    }
}
