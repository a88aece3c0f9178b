//! Project access records in the catalog log: users kept across a reopen
//! and shared by handles, their preconditions, and protected branches
//! refused by the engine (reset and delete), a dry run allowed.

#![allow(clippy::unwrap_used)]

use crate::common;

use argon_wal::{ReadPoint, Seq, UserPrecondition, WalError, WalOptions};
use bson::doc;
use common::*;

#[tokio::test]
async fn users_and_protection_live_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let user = doc! {"roles": [], "credentials": {}};
    assert!(
        wal.put_user("admin", "ann", user.clone(), UserPrecondition::NoUsers)
            .await
            .unwrap()
    );
    // The first-user precondition holds once; create never overwrites.
    assert!(
        !wal.put_user("admin", "bob", user.clone(), UserPrecondition::NoUsers)
            .await
            .unwrap()
    );
    assert!(
        !wal.put_user("admin", "ann", user.clone(), UserPrecondition::Absent)
            .await
            .unwrap()
    );
    assert!(
        !wal.put_user("admin", "bob", user.clone(), UserPrecondition::Present)
            .await
            .unwrap()
    );

    wal.create_branch("dev", "main", ReadPoint::Head)
        .await
        .unwrap();
    commit(&wal, "dev", vec![put("c", 1, 1)]).await;
    wal.set_protected("dev", true).await.unwrap();
    let refused = |r: Result<(), WalError>| {
        assert!(matches!(r, Err(WalError::Protected { .. })), "{r:?}");
    };
    refused(wal.delete_branch("dev", false).await);
    refused(
        wal.reset_branch("dev", ReadPoint::Seq(Seq(0)), false, None)
            .await
            .map(|_| ()),
    );
    let preview = wal
        .reset_branch("dev", ReadPoint::Seq(Seq(0)), true, None)
        .await
        .unwrap();
    assert!(!preview.applied);

    // A reopened handle (a restart, or another sidecar) sees the same.
    drop(wal);
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let access = wal.access().await.unwrap();
    assert!(access.user("admin", "ann").is_some());
    assert!(access.user("admin", "bob").is_none());
    refused(wal.delete_branch("dev", false).await);
    // Unprotected, dev can go; users are unaffected by branch changes.
    wal.set_protected("dev", false).await.unwrap();
    wal.delete_branch("dev", false).await.unwrap();
    assert!(wal.access().await.unwrap().user("admin", "ann").is_some());
    assert!(wal.drop_user("admin", "ann").await.unwrap());
    assert!(!wal.drop_user("admin", "ann").await.unwrap());
    assert!(!wal.access().await.unwrap().has_users());
}
