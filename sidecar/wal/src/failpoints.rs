//! Failpoints: named places in the stores where a test makes a fault
//! happen — an fsync that fails, a torn write, an insert whose
//! acknowledgement is lost. As in Neon, they exist only in builds with the
//! `failpoints` feature; without it [`fire`] is a constant `false` and the
//! stores compile to what they would be without this module.
//!
//! A test arms a point with [`set`] (`Times::Once`, `Times::N(n)`,
//! `Times::Always`) and disarms it with [`clear`]; the sidecar binary arms
//! points from `ARGON_FAILPOINTS=name=once,other=always` ([`from_env`]),
//! which is also a no-op without the feature. Points are process-global:
//! tests that arm them must not run concurrently with tests that could
//! trip over them (one test binary, one lock).

/// The embedded writer wrote a batch but the process "dies" before its
/// fsync: the store stops (every later append fails) without recording
/// anything, as a crash would.
pub const EMBEDDED_BEFORE_FSYNC: &str = "embedded-before-fsync";
/// The batch's `fdatasync` fails with EIO (the fsyncgate case).
pub const EMBEDDED_FSYNC_ERROR: &str = "embedded-fsync-error";
/// The batch reaches the disk torn (its first half and its last bytes, a
/// hole of zeros between, as out-of-order page writeback leaves it) and the
/// process "dies".
pub const EMBEDDED_TORN_WRITE: &str = "embedded-torn-write";
/// The commit was inserted into MongoDB but the reply is lost (the
/// connection dropped): the append reports a network error.
pub const MONGO_APPEND_AFTER_INSERT_BEFORE_ACK: &str = "mongo-append-after-insert-before-ack";
/// A commits read from MongoDB comes back with its first commit missing
/// (a hole, as a read of an unsafe read concern can show).
pub const MONGO_READ_GAP: &str = "mongo-read-gap";

/// The committer's append waits a while (`engine::committer`'s hold),
/// then fails without reaching the store: writes queued meanwhile were
/// resolved into the next commit on a state that will never exist.
pub const COMMIT_APPEND_FAILS: &str = "commit-append-fails";
/// The committer's append waits a while, then proceeds (so a test can
/// queue writes that the next commit resolves on it, or let another
/// handle take its seq first).
pub const COMMIT_APPEND_HELD: &str = "commit-append-held";
/// The commit is durable, then its acknowledgement is lost after a while
/// (between append and answer): its writers get an error, and the next
/// commit must find it in the log.
pub const COMMIT_ACK_LOST: &str = "commit-ack-lost";

/// How often an armed point fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    Once,
    N(u32),
    Always,
    /// Not the next n times, then once.
    Skip(u32),
}

#[cfg(feature = "failpoints")]
mod imp {
    use super::Times;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard};

    #[derive(Default)]
    struct Point {
        left: Option<Times>,
        fired: u64,
    }

    /// Fast path: nothing armed, no lock taken.
    static ANY: AtomicBool = AtomicBool::new(false);
    static POINTS: Mutex<Option<HashMap<String, Point>>> = Mutex::new(None);

    fn points() -> MutexGuard<'static, Option<HashMap<String, Point>>> {
        POINTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(name: &str, times: Times) {
        let mut p = points();
        p.get_or_insert_with(HashMap::new)
            .entry(name.to_string())
            .or_default()
            .left = Some(times);
        ANY.store(true, Ordering::SeqCst);
    }

    pub fn clear(name: &str) {
        if let Some(p) = points().as_mut().and_then(|m| m.get_mut(name)) {
            p.left = None;
        }
    }

    pub fn clear_all() {
        if let Some(m) = points().as_mut() {
            for p in m.values_mut() {
                p.left = None;
            }
        }
    }

    pub fn fired(name: &str) -> u64 {
        points()
            .as_ref()
            .and_then(|m| m.get(name))
            .map_or(0, |p| p.fired)
    }

    pub fn fire(name: &str) -> bool {
        if !ANY.load(Ordering::Relaxed) {
            return false;
        }
        let mut guard = points();
        let Some(p) = guard.as_mut().and_then(|m| m.get_mut(name)) else {
            return false;
        };
        let (fires, left) = match p.left {
            None => (false, None),
            Some(Times::Always) => (true, Some(Times::Always)),
            Some(Times::Once) | Some(Times::N(0 | 1)) => (true, None),
            Some(Times::N(n)) => (true, Some(Times::N(n - 1))),
            Some(Times::Skip(0)) => (true, None),
            Some(Times::Skip(n)) => (false, Some(Times::Skip(n - 1))),
        };
        p.left = left;
        if fires {
            p.fired += 1;
            tracing::warn!(failpoint = name, "failpoint fired");
        }
        fires
    }

    pub const ENABLED: bool = true;
}

#[cfg(not(feature = "failpoints"))]
mod imp {
    use super::Times;
    pub fn set(_name: &str, _times: Times) {}
    pub fn clear(_name: &str) {}
    pub fn clear_all() {}
    pub fn fired(_name: &str) -> u64 {
        0
    }
    #[inline(always)]
    pub fn fire(_name: &str) -> bool {
        false
    }
    pub const ENABLED: bool = false;
}

pub use imp::{clear, clear_all, fire, fired, set};

/// Whether this build has failpoints at all.
pub const ENABLED: bool = imp::ENABLED;

/// Arms points from a specification such as `embedded-fsync-error=once,
/// mongo-read-gap=3` (`once`, `always`, `off`, a count, or `skip:n`: once
/// after n passes). Without the
/// feature it does nothing and reports nothing.
pub fn configure(spec: &str) -> Result<(), String> {
    if !ENABLED {
        return Ok(());
    }
    for item in spec
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, how) = item
            .split_once('=')
            .ok_or_else(|| format!("failpoint {item:?}: expected name=once|always|off|<count>"))?;
        let name = name.trim();
        match how.trim() {
            "off" => clear(name),
            "once" => set(name, Times::Once),
            "always" => set(name, Times::Always),
            skip if skip.starts_with("skip:") => {
                let n: u32 = skip["skip:".len()..]
                    .parse()
                    .map_err(|_| format!("failpoint {name:?}: {skip:?} is not skip:<count>"))?;
                set(name, Times::Skip(n));
            }
            n => {
                let n: u32 = n.parse().map_err(|_| {
                    format!("failpoint {name:?}: {n:?} is not once|always|off|<count>")
                })?;
                set(name, Times::N(n));
            }
        }
    }
    Ok(())
}

/// [`configure`] from the environment variable `var` (the sidecar reads
/// `ARGON_FAILPOINTS`); a no-op without the feature.
pub fn from_env(var: &str) -> Result<(), String> {
    match std::env::var(var) {
        Ok(spec) if ENABLED => configure(&spec),
        _ => Ok(()),
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn counts_and_spec() {
        set("t-a", Times::N(2));
        assert!(fire("t-a") && fire("t-a") && !fire("t-a"));
        assert_eq!(fired("t-a"), 2);
        configure("t-b=once, t-c=always").unwrap();
        assert!(fire("t-b") && !fire("t-b"));
        assert!(fire("t-c") && fire("t-c"));
        configure("t-c=off").unwrap();
        assert!(!fire("t-c"));
        assert!(configure("t-d").is_err() && configure("t-d=sometimes").is_err());
        configure("t-e=skip:2").unwrap();
        assert!(!fire("t-e") && !fire("t-e") && fire("t-e") && !fire("t-e"));
        assert!(configure("t-f=skip:x").is_err());
    }
}
