//! Retryable writes: a write command carrying `lsid` and `txnNumber`
//! outside a transaction is applied at most once. The rule lives in the
//! log (`argon_wal::retry`): the commit records the key and the reply, so a
//! retry is answered from the branch's history after a restart, or by
//! another sidecar on the same log. Here: the key of a command, and the
//! stored reply of an answered retry.

use argon_wal::{RetryEntry, RetryKey, StoredReply, Wal};
use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// The retry key of a command, if it carries `lsid` and `txnNumber`.
pub fn key_of(cmd: &Document) -> Option<RetryKey> {
    let session = crate::session::session_id(cmd)?;
    let txn_number = match cmd.get("txnNumber")? {
        Bson::Int64(n) => *n,
        Bson::Int32(n) => i64::from(*n),
        _ => return None,
    };
    Some(RetryKey {
        session,
        txn_number,
    })
}

/// The reply a retried write got the first time.
pub async fn stored_reply(
    wal: &Wal,
    branch: &str,
    key: &RetryKey,
    entry: &RetryEntry,
) -> Result<Document> {
    let lost = || {
        CommandError::new(
            ErrorCode::IncompleteTransactionHistory,
            format!(
                "the write with txnNumber {} was applied, but its reply was too large to keep",
                key.txn_number
            ),
        )
    };
    match &entry.reply {
        StoredReply::Inline(r) => Document::try_from(r.as_ref().as_ref())
            .map_err(|e| CommandError::new(ErrorCode::InternalError, e.to_string())),
        StoredReply::InLog => wal
            .logged_retry_reply(branch, key, entry.seq)
            .await
            .map_err(crate::wal_error::from_wal)?
            .ok_or_else(lost),
        StoredReply::Lost => Err(lost()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn keys_need_a_session_and_a_txn_number() {
        let key = key_of(&doc! {"lsid": {"id": "x"}, "txnNumber": 5i64}).unwrap();
        assert_eq!(key.txn_number, 5);
        assert!(key_of(&doc! {"lsid": {"id": "x"}}).is_none());
        assert!(key_of(&doc! {"txnNumber": 5i64}).is_none());
    }
}
