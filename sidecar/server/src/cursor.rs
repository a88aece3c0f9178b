//! Open cursors: each holds the rest of a result computed on one branch
//! state, so later batches read the same consistent point as the first.
//! Idle cursors are reaped after [`IDLE_TIMEOUT`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bson::{Bson, Document};

/// MongoDB's default `cursorTimeoutMillis`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A reply batch stays under this many bytes of documents (MongoDB's 16 MiB
/// document limit, with room for the envelope).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;

pub struct Cursor {
    /// The namespace the client used (`db.coll`), echoed in replies.
    pub ns: String,
    pub remaining: VecDeque<Document>,
    pub last_used: Instant,
}

#[derive(Default)]
pub struct CursorStore {
    cursors: Mutex<HashMap<i64, Cursor>>,
    next_id: AtomicI64,
}

impl CursorStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Cursor>> {
        // A panic while holding this lock cannot leave a cursor half-updated
        // in a way that matters more than losing the process; keep serving.
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the first batch from `docs`; if anything is left, opens a
    /// cursor for it. Returns the batch and the cursor id (0 = exhausted).
    pub fn open(
        &self,
        ns: String,
        docs: Vec<Document>,
        batch_size: Option<usize>,
        single_batch: bool,
    ) -> (Vec<Bson>, i64) {
        let mut docs: VecDeque<Document> = docs.into();
        let batch = take_batch(&mut docs, batch_size.unwrap_or(101));
        if docs.is_empty() || single_batch {
            return (batch, 0);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(
            id,
            Cursor {
                ns,
                remaining: docs,
                last_used: Instant::now(),
            },
        );
        (batch, id)
    }

    /// The next batch of cursor `id`, and the id to report (0 once exhausted).
    pub fn next_batch(
        &self,
        id: i64,
        batch_size: Option<usize>,
    ) -> Option<(String, Vec<Bson>, i64)> {
        let mut cursors = self.lock();
        let cursor = cursors.get_mut(&id)?;
        let batch = take_batch(&mut cursor.remaining, batch_size.unwrap_or(usize::MAX));
        cursor.last_used = Instant::now();
        let ns = cursor.ns.clone();
        if cursor.remaining.is_empty() {
            cursors.remove(&id);
            return Some((ns, batch, 0));
        }
        Some((ns, batch, id))
    }

    /// Kills the given cursors; returns (killed, not found).
    pub fn kill(&self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let mut cursors = self.lock();
        ids.iter().partition(|id| cursors.remove(id).is_some())
    }

    /// Drops cursors idle since before `now - IDLE_TIMEOUT`; returns how many.
    pub fn reap(&self, now: Instant) -> usize {
        let mut cursors = self.lock();
        let before = cursors.len();
        cursors.retain(|_, c| now.saturating_duration_since(c.last_used) < IDLE_TIMEOUT);
        before - cursors.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn take_batch(docs: &mut VecDeque<Document>, n: usize) -> Vec<Bson> {
    let mut out = Vec::with_capacity(n.min(docs.len()));
    let mut bytes = 0usize;
    while out.len() < n {
        let Some(d) = docs.front() else { break };
        let size = d.to_vec().map(|v| v.len()).unwrap_or(0);
        if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
            break;
        }
        bytes += size;
        if let Some(d) = docs.pop_front() {
            out.push(Bson::Document(d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn docs(n: i32) -> Vec<Document> {
        (0..n).map(|i| doc! {"_id": i}).collect()
    }

    #[test]
    fn batches_then_exhausts() {
        let s = CursorStore::default();
        let (b, id) = s.open("d.c".into(), docs(5), Some(2), false);
        assert_eq!(b.len(), 2);
        assert_ne!(id, 0);
        let (_, b, id2) = s.next_batch(id, Some(2)).unwrap();
        assert_eq!((b.len(), id2), (2, id));
        let (_, b, id3) = s.next_batch(id, Some(2)).unwrap();
        assert_eq!((b.len(), id3), (1, 0));
        assert!(s.next_batch(id, None).is_none());
    }

    #[test]
    fn kill_and_reap() {
        let s = CursorStore::default();
        let (_, a) = s.open("d.c".into(), docs(5), Some(1), false);
        let (_, b) = s.open("d.c".into(), docs(5), Some(1), false);
        assert_eq!(s.kill(&[a, 999]), (vec![a], vec![999]));
        assert_eq!(s.reap(Instant::now()), 0);
        assert_eq!(
            s.reap(Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1)),
            1
        );
        assert!(s.next_batch(b, None).is_none());
        let (_, none) = s.open("d.c".into(), docs(1), Some(5), false);
        assert_eq!(none, 0);
    }
}
