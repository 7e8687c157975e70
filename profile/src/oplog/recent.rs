//! The in-memory key index of the `recent` table.
//!
//! `recent` is appended to in write order and has no index on `key` in SQLite: an
//! index over keys from many ranges would dirty as many pages per commit as the
//! `state` tree it relieves (`docs/decisions.md`). [`RecentIndex`] is that index,
//! kept by the writer and read by every reader of the map: for each key with a row in
//! `recent`, its newest row.
//!
//! **What it holds.** Only committed rows. The writer stages a transaction's rows in
//! a [`Staged`] and publishes them after `COMMIT` succeeds; a transaction that moved
//! `recent` into `state` clears the index in the same publication. It is rebuilt from
//! the table when the store opens.
//!
//! **Why readers may consult it outside their SQLite snapshot.** A reader takes what
//! it needs from the index first, then opens its read transaction. Records only ever
//! move from `recent` to `state` (never back), a key's later record always outranks
//! its earlier one, and the index changes only after the transaction that changed the
//! table committed. So every record the reader took from the index is either still in
//! `recent` or already in the `state` its read transaction sees, and taking, per key,
//! the greater of the two records (by `(clock, device id, op)`) gives each key's
//! record as of a point no earlier than the index read. A record whose entry is gone
//! from the reader's snapshot was flushed and pruned in between: its `state` row
//! (with the value sealed inline) stands in for it.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use super::entry::DeviceId;

/// One row of the map as `recent` (and `state`) holds it: operation `op` of entry
/// `(dev, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecentRow {
    pub(crate) clock: u64,
    /// The device's row number in `devices`.
    pub(crate) dev: i64,
    pub(crate) device: DeviceId,
    pub(crate) seq: u64,
    pub(crate) op: u32,
    pub(crate) tomb: bool,
    /// The value sealed inline (rows from a snapshot); `None` when it is read from
    /// the entry's body, or for a tombstone.
    pub(crate) inline: Option<Vec<u8>>,
}

impl RecentRow {
    /// The last-writer-wins order of writes.
    pub(crate) fn rank(&self) -> (u64, DeviceId, u32) {
        (self.clock, self.device, self.op)
    }
}

/// The committed rows of `recent`, newest per key.
#[derive(Debug, Default)]
pub(crate) struct RecentIndex {
    rows: RwLock<BTreeMap<String, RecentRow>>,
}

impl RecentIndex {
    /// The newest row of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<RecentRow> {
        self.read().get(key).cloned()
    }

    /// The rows with keys in `lo ..` (`lo` excluded when `exclusive`) and below `hi`
    /// (no end when `None`), in key order, at most `limit`.
    pub(crate) fn range(
        &self,
        lo: &str,
        exclusive: bool,
        hi: Option<&str>,
        limit: usize,
    ) -> Vec<(String, RecentRow)> {
        use std::ops::Bound;
        let start = if exclusive {
            Bound::Excluded(lo)
        } else {
            Bound::Included(lo)
        };
        let end = hi.map_or(Bound::Unbounded, Bound::Excluded);
        // `BTreeMap::range` panics on an inverted range or on `(a, a)`.
        if let Some(h) = hi
            && (lo > h || (exclusive && lo == h))
        {
            return Vec::new();
        }
        let rows = self.read();
        rows.range::<str, _>((start, end))
            .take(limit)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Every row, in key order.
    pub(crate) fn all(&self) -> Vec<(String, RecentRow)> {
        self.read()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Replaces the whole index (the store opening, or reloading after a failure).
    pub(crate) fn reset(&self, rows: BTreeMap<String, RecentRow>) {
        *self.write() = rows;
    }

    /// Publishes a committed transaction: empties the index first if it moved
    /// `recent` into `state`, then adds its rows.
    pub(crate) fn publish(&self, staged: &mut Staged) {
        if !staged.flushed && staged.rows.is_empty() {
            return;
        }
        let mut rows = self.write();
        if staged.flushed {
            rows.clear();
        }
        // One insert per row: `BTreeMap::append` would rebuild the whole index.
        for (key, row) in std::mem::take(&mut staged.rows) {
            rows.insert(key, row);
        }
        staged.flushed = false;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, RecentRow>> {
        // Updates replace or insert whole rows; a panic cannot leave one half-written.
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, RecentRow>> {
        self.rows.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the writer's open transaction did to `recent`, to publish when it commits.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// Rows appended, newest per key.
    rows: BTreeMap<String, RecentRow>,
    /// `recent` was emptied into `state`: the index's rows no longer describe it.
    flushed: bool,
}

impl Staged {
    /// Records a row appended to `recent`.
    pub(crate) fn push(&mut self, key: &str, row: RecentRow) {
        self.rows.insert(key.to_owned(), row);
    }

    /// Records that `recent` was emptied into `state`, with every row staged so far.
    pub(crate) fn flushed(&mut self) {
        self.rows.clear();
        self.flushed = true;
    }

    /// The row of `key` in `recent` as the open transaction sees it: staged, or in
    /// `index` unless the transaction emptied `recent`.
    pub(crate) fn lookup(&self, index: &RecentIndex, key: &str) -> Option<RecentRow> {
        match self.rows.get(key) {
            Some(r) => Some(r.clone()),
            None if self.flushed => None,
            None => index.get(key),
        }
    }

    /// Forgets the transaction (it rolled back).
    pub(crate) fn discard(&mut self) {
        self.rows.clear();
        self.flushed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(clock: u64) -> RecentRow {
        RecentRow {
            clock,
            dev: 1,
            device: [1; 8],
            seq: clock,
            op: 0,
            tomb: false,
            inline: None,
        }
    }

    #[test]
    fn a_transaction_shows_only_after_it_is_published() {
        let index = RecentIndex::default();
        let mut tx = Staged::default();
        tx.push("a", row(1));
        assert_eq!(tx.lookup(&index, "a"), Some(row(1)));
        assert_eq!(index.get("a"), None);
        index.publish(&mut tx);
        assert_eq!(index.get("a"), Some(row(1)));

        // A flush hides the published rows from the transaction, and publishing it
        // replaces them with what was staged after the flush.
        tx.push("b", row(2));
        tx.flushed();
        assert_eq!(tx.lookup(&index, "a"), None);
        assert_eq!(tx.lookup(&index, "b"), None);
        tx.push("c", row(3));
        index.publish(&mut tx);
        assert_eq!(index.all(), vec![("c".to_owned(), row(3))]);

        tx.push("d", row(4));
        tx.discard();
        index.publish(&mut tx);
        assert_eq!(index.get("d"), None);
        assert_eq!(index.get("c"), Some(row(3)));
    }

    #[test]
    fn range_bounds() {
        let index = RecentIndex::default();
        let mut tx = Staged::default();
        for (i, k) in ["a", "b", "b1", "c"].into_iter().enumerate() {
            tx.push(k, row(i as u64));
        }
        index.publish(&mut tx);
        let keys = |v: Vec<(String, RecentRow)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(index.range("b", false, Some("c"), 10)), ["b", "b1"]);
        assert_eq!(keys(index.range("b", true, Some("c"), 10)), ["b1"]);
        assert_eq!(keys(index.range("a", false, None, 2)), ["a", "b"]);
        assert!(index.range("c", false, Some("b"), 10).is_empty());
        assert!(index.range("b", true, Some("b"), 10).is_empty());
    }
}
