//! Retryable writes: the reply to each `(lsid, txnNumber)` is remembered so a
//! retried statement returns the first reply instead of applying twice.
//!
//! The memory is per process (a sidecar serves its own app's retries) and
//! bounded: past [`MAX_ENTRIES`] the oldest half is forgotten. A retry that
//! arrives while the first attempt is still running waits for its outcome.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bson::{Bson, Document};
use tokio::sync::OnceCell;

use crate::error::Result;

const MAX_ENTRIES: usize = 100_000;

type Key = (Vec<u8>, i64);

#[derive(Default)]
pub struct RetryMemory {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Arc<OnceCell<Document>>>,
    order: VecDeque<Key>,
}

/// The retry key of a command, if it carries `lsid` and `txnNumber`.
pub fn key_of(cmd: &Document) -> Option<Key> {
    let id = crate::session::session_id(cmd)?;
    let txn = match cmd.get("txnNumber")? {
        Bson::Int64(n) => *n,
        Bson::Int32(n) => *n as i64,
        _ => return None,
    };
    Some((id, txn))
}

impl RetryMemory {
    /// Runs `write` once per key: a later call with the same key gets the
    /// first successful reply. Errors are not remembered (a retry runs again).
    pub async fn run_once<F, Fut>(&self, key: Key, write: F) -> Result<Document>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Document>>,
    {
        let cell = {
            let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if !e.map.contains_key(&key) {
                if e.order.len() >= MAX_ENTRIES {
                    for _ in 0..MAX_ENTRIES / 2 {
                        if let Some(old) = e.order.pop_front() {
                            e.map.remove(&old);
                        }
                    }
                }
                e.order.push_back(key.clone());
            }
            e.map.entry(key).or_default().clone()
        };
        cell.get_or_try_init(write).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn second_run_returns_first_reply() {
        let m = RetryMemory::default();
        let runs = AtomicUsize::new(0);
        for _ in 0..2 {
            let r = m
                .run_once((vec![1], 1), || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(doc! {"n": 1})
                })
                .await
                .unwrap();
            assert_eq!(r, doc! {"n": 1});
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let key = key_of(&doc! {"lsid": {"id": "x"}, "txnNumber": 5i64}).unwrap();
        assert_eq!(key.1, 5);
        assert!(key_of(&doc! {"lsid": {"id": "x"}}).is_none());
    }
}
