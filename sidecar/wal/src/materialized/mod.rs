//! The materialized store: every branch's documents, index entries and
//! collection catalog as versions in one embedded KV (fjall) per process,
//! so memory is a cache budget, not the data size, and a read at any
//! `(branch, seq)` is a seek (DESIGN.md, "Materialized store: the design").
//!
//! It is a cache of the log, never the truth: batches are not fsync'd, the
//! applied marker (`applied`) is written in the same batch as the commit it
//! marks, so after a crash the store holds a prefix of what it applied and
//! says exactly which; a store of another format is deleted and rebuilt.
//!
//! Modules, one idea each: `keys` (the six key spaces), `view` (levels of
//! a read), `scan` (the level merge, both directions, and point reads),
//! `filter` (own-key filters: which documents an incarnation ever wrote),
//! `catalog` (collection and index numbers), `index` (index entries,
//! lookups and index scans), `shape` (what a planner needs to know about
//! an index's keys, as counters kept per incarnation),
//! `apply` (a commit → one batch), `budget` (the disk bound: when the
//! store stops growing).
//!
//! Reads return owned, refcounted values (`Doc` wraps fjall's `Slice`),
//! never borrows into the store, and are fallible (I/O, damage).

mod apply;
mod budget;
pub mod catalog;
mod filter;
mod index;
pub(crate) mod keys;
mod scan;
mod shape;
pub mod view;

pub use budget::DiskStatus;
pub use catalog::{CollectionEntry, IndexEntry};
pub use filter::FilterStats;
pub use index::IndexScan;
pub use view::{Level, View, ViewBase};

pub use crate::doc::Doc;
use crate::error::{Result, WalError};
use crate::idkey::IdKey;
use crate::rawdoc;
use crate::record::Commit;
use crate::types::{BranchId, CommitTime, Namespace, Seq};
use bson::{Bson, Document, RawDocument};
use catalog::Counters;
use fjall::Slice;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The format this binary writes (`m format`); a store with another is
/// deleted and rebuilt from the log on open.
pub const FORMAT: &[u8] = b"argon-materialized-4";

/// A project's number in this store (assigned on first use; never leaves
/// the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectNo(pub u32);

/// How the store uses memory and disk.
#[derive(Clone, Copy, Debug)]
pub struct MaterializedOptions {
    /// The process's data budget: the block cache gets 1/2, the write
    /// buffers (memtables) 1/4, own-key filters 1/8 (`filter_bytes`); the
    /// rest is left to the engine's caches.
    pub cache_bytes: u64,
    /// The cap on all own-key filters' bits (`None`: `cache_bytes / 8`).
    pub filter_bytes: Option<u64>,
    /// The store's bound on disk (`budget`): at or above it nothing more
    /// is applied (`None`: unbounded).
    pub disk_bytes: Option<u64>,
}

impl MaterializedOptions {
    /// The options for a data budget of `cache_bytes`, shares as documented,
    /// unbounded on disk.
    pub fn with_budget(cache_bytes: u64) -> MaterializedOptions {
        MaterializedOptions {
            cache_bytes,
            filter_bytes: None,
            disk_bytes: None,
        }
    }
}

/// What [`Materialized::apply`] did with a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written with its applied marker.
    Written,
    /// The store held it already (catch-up may offer a commit twice).
    Held,
    /// Not written: the store is at its disk bound (`DiskStatus::full`).
    Full,
}

impl Default for MaterializedOptions {
    fn default() -> Self {
        MaterializedOptions::with_budget(256 << 20)
    }
}

/// The KV handles and where they live (errors name the directory).
#[derive(Clone)]
pub(crate) struct Kv {
    db: fjall::Database,
    ks: fjall::Keyspace,
    dir: Arc<PathBuf>,
    /// Which documents each incarnation ever wrote (point reads skip levels).
    filters: Arc<filter::Filters>,
}

impl Kv {
    pub(crate) fn error(&self, what: &str, e: fjall::Error) -> WalError {
        WalError::io(
            self.dir.as_path(),
            std::io::Error::other(format!("materialized store: {what}: {e}")),
        )
    }

    pub(crate) fn malformed(&self, reason: String) -> WalError {
        WalError::malformed("materialized store", reason)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Slice>> {
        self.ks.get(key).map_err(|e| self.error("get", e))
    }
}

/// A store value holding a document (`keys::PRESENT` ‖ BSON) as a `Doc`;
/// anything else is damage.
pub(crate) fn doc_from_value(kv: &Kv, v: Slice) -> Result<Doc> {
    let len = v.len();
    if v.first() != Some(&keys::PRESENT) {
        return Err(kv.malformed(format!("document value of {len} bytes")));
    }
    Doc::stored(v, 1).ok_or_else(|| kv.malformed(format!("document value of {len} bytes")))
}

/// One process's materialized store.
pub struct Materialized {
    kv: Kv,
    /// Held while a batch is built and written: one writer at a time, and
    /// the counters the batch draws numbers from.
    writer: Mutex<Counters>,
    /// Checked under `writer` before every batch.
    disk: budget::DiskBudget,
}

impl std::fmt::Debug for Materialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Materialized({})", self.kv.dir.display())
    }
}

impl Materialized {
    /// Opens (or creates) the store in `dir`; one with another format, or
    /// that cannot be read as one, is deleted and created afresh (it is a
    /// cache: the caller catches up from the log).
    pub fn open(dir: impl AsRef<Path>, opts: MaterializedOptions) -> Result<Materialized> {
        Self::open_with_format(dir.as_ref(), opts, FORMAT)
    }

    pub(crate) fn open_with_format(
        dir: &Path,
        opts: MaterializedOptions,
        format: &[u8],
    ) -> Result<Materialized> {
        let store = match Self::open_kv(dir, opts) {
            Ok(kv) => match kv.get(&keys::format())? {
                Some(f) if &*f == format => Some(kv),
                None if kv.ks.is_empty().map_err(|e| kv.error("open", e))? => {
                    kv.ks
                        .insert(keys::format(), format)
                        .map_err(|e| kv.error("write format", e))?;
                    Some(kv)
                }
                _ => None,
            },
            Err(_) => None,
        };
        let kv = match store {
            Some(kv) => kv,
            None => {
                tracing::warn!(dir = %dir.display(), "materialized store of another format or unreadable: rebuilding");
                std::fs::remove_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
                let kv = Self::open_kv(dir, opts)?;
                kv.ks
                    .insert(keys::format(), format)
                    .map_err(|e| kv.error("write format", e))?;
                kv
            }
        };
        let counters = match kv.get(&keys::next())? {
            Some(v) => Counters::decode(&v)?,
            None => Counters::default(),
        };
        let disk = budget::DiskBudget::new(opts.disk_bytes, Arc::clone(&kv.dir), measure(&kv));
        Ok(Materialized {
            kv,
            writer: Mutex::new(counters),
            disk,
        })
    }

    fn open_kv(dir: &Path, opts: MaterializedOptions) -> Result<Kv> {
        let dir_err = |e: fjall::Error| {
            WalError::io(
                dir,
                std::io::Error::other(format!("materialized store: open: {e}")),
            )
        };
        let budget = opts.cache_bytes.max(4 << 20);
        let db = fjall::Database::builder(dir)
            .cache_size(budget / 2)
            // fjall's smallest: bounds the journal replayed after a crash.
            .max_journaling_size(64 << 20)
            .open()
            .map_err(dir_err)?;
        let ks = db
            .keyspace("versions", || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(budget / 4)
            })
            .map_err(dir_err)?;
        let filter_cap = opts.filter_bytes.unwrap_or(opts.cache_bytes / 8);
        Ok(Kv {
            db,
            ks,
            dir: Arc::new(dir.to_path_buf()),
            filters: Arc::new(filter::Filters::new(
                usize::try_from(filter_cap).unwrap_or(usize::MAX),
            )),
        })
    }

    /// The number of project `name`, assigned (and written) on first use.
    pub fn project(&self, name: &str) -> Result<ProjectNo> {
        let key = keys::project(name);
        if key.len() > keys::MAX_KEY {
            return Err(WalError::InvalidOp(format!(
                "project name of {} bytes",
                name.len()
            )));
        }
        let mut counters = self.lock();
        if let Some(v) = self.kv.get(&key)? {
            let b: [u8; 4] = v
                .as_ref()
                .try_into()
                .map_err(|_| self.kv.malformed("project number".into()))?;
            return Ok(ProjectNo(u32::from_be_bytes(b)));
        }
        let mut next = *counters;
        let n = Counters::take(&mut next.project)?;
        let mut b = self.kv.db.batch();
        b.insert(&self.kv.ks, key, n.to_be_bytes());
        b.insert(&self.kv.ks, keys::next(), next.encode());
        b.commit().map_err(|e| self.kv.error("write project", e))?;
        *counters = next;
        Ok(ProjectNo(n))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding it left no half-written batch (a batch is
        // written whole or not at all), so the counters are still right.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last commit of incarnation `inc` this store holds, with its time.
    pub fn applied(&self, project: ProjectNo, inc: BranchId) -> Result<Option<(Seq, CommitTime)>> {
        let Some(v) = self.kv.get(&keys::applied(project.0, inc))? else {
            return Ok(None);
        };
        let b: [u8; 16] = v
            .as_ref()
            .try_into()
            .map_err(|_| self.kv.malformed("applied marker".into()))?;
        let (s, t) = b.split_at(8);
        let seq = u64::from_be_bytes(s.try_into().unwrap_or_default());
        let time = i64::from_be_bytes(t.try_into().unwrap_or_default());
        Ok(Some((Seq(seq), CommitTime(time))))
    }

    /// Applies `commit` on top of `view` (incarnation `commit.branch` at
    /// `commit.seq - 1`) as one unsynced batch with its applied marker,
    /// unless the store holds it already or is at its disk bound; a commit
    /// after a gap is refused.
    pub fn apply(&self, view: &View, commit: &Commit) -> Result<Applied> {
        let mut counters = self.lock();
        if !self.disk.has_room(|| measure(&self.kv)) {
            return Ok(Applied::Full);
        }
        Ok(match apply::apply(&self.kv, &mut counters, view, commit)? {
            Some(bytes) => {
                self.disk.written(bytes);
                Applied::Written
            }
            None => Applied::Held,
        })
    }

    /// Whether a batch may be written now (the rule `apply` checks): a
    /// catch-up asks before reading commits from the log that it could not
    /// apply.
    pub fn has_room(&self) -> bool {
        self.disk.has_room(|| measure(&self.kv))
    }

    /// The store's size on disk as last measured, against its bound.
    pub fn disk_status(&self) -> DiskStatus {
        self.disk.status()
    }

    /// The view of `inc` at `seq` in `project` (see `View::new`).
    pub fn view(
        &self,
        project: ProjectNo,
        inc: BranchId,
        seq: Seq,
        base_of: impl Fn(BranchId) -> Option<ViewBase>,
    ) -> Result<View> {
        View::new(project.0, inc, seq, base_of)
    }

    /// The collection `ns` as `view` sees it.
    pub fn collection(&self, view: &View, ns: &Namespace) -> Result<Option<CollectionView>> {
        Ok(read_entry(&self.kv, view, ns)?.map(|entry| CollectionView {
            kv: self.kv.clone(),
            view: view.clone(),
            entry,
        }))
    }

    /// Every collection `view` sees, in namespace order.
    pub fn namespaces(&self, view: &View) -> Result<Vec<(Namespace, CollectionEntry)>> {
        list_entries(&self.kv, view)
    }

    /// Database names `view` sees, sorted.
    pub fn databases(&self, view: &View) -> Result<Vec<String>> {
        let mut dbs: Vec<String> = Vec::new();
        for (ns, _) in self.namespaces(view)? {
            if dbs.last() != Some(&ns.db) {
                dbs.push(ns.db);
            }
        }
        Ok(dbs)
    }

    /// Waits until the KV has no flush or compaction running (benchmarks).
    pub fn busy(&self) -> bool {
        self.kv.db.active_compactions() > 0 || self.kv.db.outstanding_flushes() > 0
    }

    /// Turns own-key filters off (`false`: every point read seeks every
    /// level, as before they existed) or back on: for benchmarks comparing
    /// the two in one run, and tests showing both read the same.
    pub fn set_own_key_filters(&self, on: bool) {
        self.kv.filters.set_enabled(on);
    }

    /// The own-key filters' sizes against their cap.
    pub fn own_key_filters(&self) -> FilterStats {
        self.kv.filters.stats()
    }

    /// Bytes on disk (benchmarks).
    pub fn disk_space(&self) -> u64 {
        self.kv.db.disk_space().unwrap_or(0)
    }
}

/// The store's bytes on disk as the kubelet counts an `emptyDir`: blocks
/// allocated to the files under its directory. Not fjall's `disk_space`:
/// that counts the active journal's length, preallocated sparse to 64 MiB,
/// so an empty store would measure 64 MiB. `None` when the walk fails.
fn measure(kv: &Kv) -> Option<u64> {
    allocated_bytes(kv.dir.as_path()).ok()
}

fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total = total.saturating_add(if meta.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            allocated(&meta)
        });
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks().saturating_mul(512)
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

pub(crate) fn read_entry(kv: &Kv, view: &View, ns: &Namespace) -> Result<Option<CollectionEntry>> {
    let item = keys::namespace(ns);
    let p = view.project;
    match scan::point(kv, view, |l| keys::catalog(p, l.inc), None, &item)? {
        Some(v) => CollectionEntry::decode(&v),
        None => Ok(None),
    }
}

pub(crate) fn list_entries(kv: &Kv, view: &View) -> Result<Vec<(Namespace, CollectionEntry)>> {
    let p = view.project;
    let mut out = Vec::new();
    for r in scan::Merge::new(kv, view, |l| keys::catalog(p, l.inc), scan::all) {
        let (item, v) = r?;
        let ns = keys::namespace_from(&item).ok_or_else(|| kv.malformed("namespace key".into()))?;
        if let Some(e) = CollectionEntry::decode(&v)? {
            out.push((ns, e));
        }
    }
    Ok(out)
}

/// One collection as a view sees it: what `CollectionState` is for the
/// in-memory model, over the KV.
#[derive(Clone)]
pub struct CollectionView {
    kv: Kv,
    view: View,
    entry: CollectionEntry,
}

/// A collection scan: `(IdKey, Doc)` in `_id` order.
pub struct DocScan {
    merge: scan::Merge,
    kv: Kv,
}

impl Iterator for DocScan {
    type Item = Result<(IdKey, Doc)>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.merge.next()? {
            Ok((item, v)) => doc_from_value(&self.kv, v).map(|d| (whole_id(&item, d.as_raw()), d)),
            Err(e) => Err(e),
        })
    }
}

/// The `_id` key of a document stored under item `stored`: the item itself,
/// or for the short form of a long one, the document's own `_id`.
pub(crate) fn whole_id(stored: &[u8], doc: &RawDocument) -> IdKey {
    if keys::is_long(stored) {
        IdKey::from_bson(&rawdoc::id_of(doc).unwrap_or(Bson::Null))
    } else {
        IdKey::from_key_bytes(stored)
    }
}

impl CollectionView {
    pub fn entry(&self) -> &CollectionEntry {
        &self.entry
    }

    pub fn options(&self) -> &Document {
        &self.entry.options
    }

    /// Index specs, `_id_` first.
    pub fn indexes(&self) -> Vec<Document> {
        self.entry.specs()
    }

    fn docs_prefix(&self) -> impl Fn(&Level) -> Vec<u8> + use<> {
        let (p, n) = (self.view.project, self.entry.number);
        move |l| keys::docs(p, l.inc, n)
    }

    pub fn get(&self, id: &Bson) -> Result<Option<Doc>> {
        self.get_by_key(&IdKey::from_bson(id))
    }

    pub fn get_by_key(&self, key: &IdKey) -> Result<Option<Doc>> {
        self.get_by_key_bytes(key.as_bytes())
    }

    /// The document whose `_id` key bytes are `key` (as a scan gives them).
    pub fn get_by_key_bytes(&self, key: &[u8]) -> Result<Option<Doc>> {
        let coll = Some(self.entry.number);
        scan::point(&self.kv, &self.view, self.docs_prefix(), coll, key)?
            .map(|v| doc_from_value(&self.kv, v))
            .transpose()
    }

    /// Every document, in `_id` order.
    pub fn scan(&self) -> DocScan {
        self.scan_from(None)
    }

    /// The documents after the one whose key is `after` (all when `None`),
    /// in `_id` order: a cursor keeps its view and last key, not an iterator.
    pub fn scan_from(&self, after: Option<&[u8]>) -> DocScan {
        let merge = match after {
            Some(a) => scan::Merge::new(&self.kv, &self.view, self.docs_prefix(), |p| {
                scan::after(p, a)
            }),
            None => scan::Merge::new(&self.kv, &self.view, self.docs_prefix(), scan::all),
        };
        DocScan {
            merge,
            kv: self.kv.clone(),
        }
    }

    /// The documents before the one whose key is `before` (all when
    /// `None`), in descending `_id` order: [`Self::scan_from`] reversed.
    pub fn scan_before(&self, before: Option<&[u8]>) -> DocScan {
        let merge = match before {
            // Every version of an item below `before` sorts below
            // `prefix ‖ stored(before)` (stored items are prefix-free).
            Some(b) => scan::Merge::backward(&self.kv, &self.view, self.docs_prefix(), |p| {
                let (lo, _) = scan::all(p);
                let mut hi = p.to_vec();
                hi.extend_from_slice(&keys::stored_item(b));
                (lo, std::ops::Bound::Excluded(hi))
            }),
            None => scan::Merge::backward(&self.kv, &self.view, self.docs_prefix(), scan::all),
        };
        DocScan {
            merge,
            kv: self.kv.clone(),
        }
    }

    /// The number of documents (a scan: see DESIGN.md's open question 2).
    pub fn len(&self) -> Result<u64> {
        let mut n = 0;
        for r in scan::Merge::new(&self.kv, &self.view, self.docs_prefix(), scan::all) {
            r?;
            n += 1;
        }
        Ok(n)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}
