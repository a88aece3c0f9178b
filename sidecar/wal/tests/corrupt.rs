//! Damaged segments: a torn tail is cut off; damage in the middle is an
//! error naming the file and offset, and `KeepPrefix` recovery keeps
//! everything before it.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::{
    EmbeddedOptions, EmbeddedStore, LogStore, ReadPoint, Recovery, Seq, Wal, WalError, WalOptions,
};
use common::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn segment(dir: &Path) -> PathBuf {
    dir.join("log").join(format!("{:020}.seg", 1))
}

async fn fill(dir: &Path, n: i64) -> Vec<u64> {
    let wal = embedded(dir, WalOptions::default()).await;
    let seg = segment(dir);
    let mut ends = Vec::new();
    for i in 1..=n {
        commit(&wal, "main", vec![put("a", i, i)]).await;
        ends.push(std::fs::metadata(&seg).unwrap().len());
    }
    ends
}

async fn open(dir: &Path, recovery: Recovery) -> Result<Wal, WalError> {
    let store: Arc<dyn LogStore> = EmbeddedStore::open_with(dir, EmbeddedOptions { recovery })?;
    Wal::open(store, "proj", WalOptions::default()).await
}

#[tokio::test]
async fn torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let ends = fill(dir.path(), 5).await;
    // Half a record at the end, as a crash mid-write leaves it.
    let seg = segment(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    let last_start = ends[3] as usize;
    std::fs::write(&seg, &bytes[..last_start + (bytes.len() - last_start) / 2]).unwrap();
    let wal = open(dir.path(), Recovery::Strict).await.unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(4));
    // And the store appends after the cut.
    assert_eq!(commit(&wal, "main", vec![put("a", 9, 9)]).await.seq, Seq(5));
    drop(wal);
    // Garbage zeros after the end are a torn tail too.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 100]).unwrap();
    drop(f);
    let wal = open(dir.path(), Recovery::Strict).await.unwrap();
    assert_eq!(
        wal.read("main", ReadPoint::Head).await.unwrap().seq(),
        Seq(5)
    );
}

#[tokio::test]
async fn corruption_in_the_middle_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let ends = fill(dir.path(), 6).await;
    let seg = segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip bytes inside the payload of the 4th commit record.
    let start = ends[2] as usize;
    for b in &mut bytes[start + 40..start + 44] {
        *b ^= 0xFF;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let e = open(dir.path(), Recovery::Strict).await.unwrap_err();
    match &e {
        WalError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, start as u64);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&start.to_string()),
        "{msg}"
    );

    // Keep-prefix recovery: the three commits before the damage are there.
    let wal = open(dir.path(), Recovery::KeepPrefix).await.unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(3));
    assert_eq!(flat(&head)["a"].len(), 3);
    // The damaged rest was moved aside, not deleted.
    let aside = PathBuf::from(format!("{}.corrupt-at-{start}", seg.display()));
    assert!(aside.exists());
}

#[tokio::test]
async fn damaged_header_in_the_middle_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ends = fill(dir.path(), 4).await;
    let seg = segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let start = ends[1] as usize;
    bytes[start] ^= 0x55; // the length field
    std::fs::write(&seg, &bytes).unwrap();
    let e = open(dir.path(), Recovery::Strict).await.unwrap_err();
    assert!(
        matches!(e, WalError::Corrupt { offset, .. } if offset == start as u64),
        "{e}"
    );
}
