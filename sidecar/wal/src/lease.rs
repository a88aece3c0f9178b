//! The branch-writer lease: which of the processes sharing a store commits
//! a branch's writes for the others (they forward their writes to it).
//!
//! The lease is a routing hint, never a safety mechanism: every commit is
//! still an optimistic append at `head + 1` that the store accepts once. Two
//! processes that both believe they hold a lease (a paused holder that
//! wakes up after a takeover) only make each other retry appends; no commit
//! is lost or duplicated. So the lease needs no fencing and no synchronised
//! clocks, only a way to tell a live holder from a dead one:
//!
//! - the holder renews by compare-and-swap: `beat + 1` on the record it last
//!   wrote; a swap that finds another record means it lost the lease;
//! - a candidate that finds the record with the same `(term, beat)` for a
//!   whole lease period *by its own clock* takes it over with a swap that
//!   expects that record (`term + 1`). No process compares its clock with a
//!   time another process wrote, so clock skew between pods cannot make a
//!   live holder look dead.
//!
//! Stores shared by several processes keep the record (`store::mongo`); an
//! embedded store has one owner process, which writes every branch itself.

/// One branch's writer lease as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterLease {
    /// The holding process (a random token per process, never reused).
    pub holder: String,
    /// Where the holder takes forwarded writes (`host:port`).
    pub address: String,
    /// Incremented by every takeover.
    pub term: i64,
    /// Incremented by every renewal: a holder that stops renewing is dead
    /// (or cut off) to the others.
    pub beat: i64,
}

impl WriterLease {
    /// The first lease of a branch, or a takeover of `previous`.
    pub fn claim(holder: &str, address: &str, previous: Option<&WriterLease>) -> WriterLease {
        WriterLease {
            holder: holder.to_string(),
            address: address.to_string(),
            term: previous.map_or(1, |p| p.term.saturating_add(1)),
            beat: 0,
        }
    }

    /// The same lease, renewed.
    pub fn renewed(&self) -> WriterLease {
        WriterLease {
            beat: self.beat.wrapping_add(1),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeovers_raise_the_term_and_renewals_the_beat() {
        let a = WriterLease::claim("a", "10.0.0.1:27018", None);
        assert_eq!((a.term, a.beat), (1, 0));
        let a2 = a.renewed();
        assert_eq!((a2.term, a2.beat), (1, 1));
        assert_ne!(a, a2, "a renewal changes the record");
        let b = WriterLease::claim("b", "10.0.0.2:27018", Some(&a2));
        assert_eq!((b.holder.as_str(), b.term, b.beat), ("b", 2, 0));
    }
}
