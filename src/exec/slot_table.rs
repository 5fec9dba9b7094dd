//! The hash table under a [`GroupTable`](crate::exec::group_table::GroupTable):
//! open addressing with linear probing over 8-byte slots, each holding 32
//! bits of a key's hash (its tag) and the key's group index.
//!
//! Why not hashbrown, which this replaced: a hashbrown lookup reads a
//! control byte and then, elsewhere in memory, the slot it stands for, and
//! it offers no way to fetch either ahead. On a table larger than the
//! cache both are misses, and a group-by's time goes to them (the lookup
//! of SF1 lineitem's 800k-group GROUP BY was a quarter of its CPU). Here a
//! lookup starts at one slot computed from the hash, so a batch can
//! [`prefetch`](SlotTable::prefetch) the slot of a row some rows ahead
//! while it looks up the current one, and the misses overlap.
//!
//! Entries are never removed one by one, only all at once
//! ([`clear`](SlotTable::clear)), so an empty slot ends every probe.
//! The table is kept at most 7/8 full, as hashbrown's was. Linear
//! probing's misses lengthen there (about 32 slots, four cache lines read
//! in order, against 8.5 slots at 3/4 full), but tables kept at most 3/4
//! full took as long (the bench's GROUP BY and DISTINCT, five runs each)
//! and up to twice the memory, which under a small limit is more spilling.
//! Where lookups mostly miss, as a selective join's probes do, a table is
//! rebuilt at most 7/16 full instead ([`GroupTable::spread`]).
//!
//! [`GroupTable::spread`]: crate::exec::group_table::GroupTable::spread
//!
//! # Memory
//!
//! One allocation of [`bytes_for`](SlotTable::bytes_for) its capacity,
//! 8 bytes a slot and a power of two of slots: 9.1 to 18.3 bytes an entry.
//! It is written through when made, so its pages are all committed then
//! (see [`with_capacity`](SlotTable::with_capacity)). It grows only when an
//! insert finds it full, which callers avoid by sizing it first with
//! [`with_capacity`](SlotTable::with_capacity).

use crate::exec::prefetch;

/// An empty slot. A full one holds the group plus one in its low half, so
/// it is never 0.
const EMPTY: u64 = 0;

#[derive(Default)]
pub struct SlotTable {
    /// A power of two of slots, or none.
    slots: Vec<u64>,
    len: usize,
}

impl SlotTable {
    pub fn new() -> SlotTable {
        SlotTable::default()
    }

    /// A table that holds `entries` without growing.
    pub fn with_capacity(entries: usize) -> SlotTable {
        // Written, not zeroed by the allocator: a table's first reads of a
        // page (probes for an insert) mapped the kernel's zero page, and the
        // insert's write then copied it and flushed the other core's TLB by
        // interrupt. In the bench's GROUP BY those flushes were 2.3% of the
        // samples (perf), and writing the table first took system time from
        // 0.21 s to 0.17 s a run (means of 7).
        let n = slots_for(entries);
        let mut slots = Vec::with_capacity(n);
        slots.resize(n, EMPTY);
        SlotTable { slots, len: 0 }
    }

    /// Bytes [`with_capacity(entries)`](Self::with_capacity) allocates.
    pub fn bytes_for(entries: usize) -> usize {
        slots_for(entries) * 8
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries held before an insert must grow the table.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 8 * 7
    }

    /// Heap bytes held.
    pub fn allocation_size(&self) -> usize {
        self.slots.capacity() * 8
    }

    /// Fetch into cache the slot where a lookup of `hash` starts.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots, self.home(hash));
        }
    }

    /// The first entry whose tag is `hash`'s and for whose group `eq`
    /// holds, probing in insertion order.
    #[inline]
    pub fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let found = self.probe(hash, eq).ok()?;
        Some(group_of(self.slots[found]))
    }

    /// [`find`](Self::find), and where nothing is found, add `group` under
    /// `hash` in the empty slot that ended the search: one probe for both.
    /// Returns the group found, or None when `group` was added.
    #[inline]
    pub fn find_or_insert(
        &mut self,
        hash: u64,
        eq: impl FnMut(u32) -> bool,
        group: u32,
        rehash: impl Fn(u32) -> u64,
    ) -> Option<u32> {
        debug_assert!(group < u32::MAX);
        if self.len >= self.capacity() {
            self.grow(self.len + 1, rehash);
        }
        match self.probe(hash, eq) {
            Ok(found) => Some(group_of(self.slots[found])),
            Err(empty) => {
                self.slots[empty] = tag_bits(hash) | (group as u64 + 1);
                self.len += 1;
                None
            }
        }
    }

    /// Add `group` under `hash`, which no entry has with an equal key.
    /// `rehash` gives an entry's hash from its group, should the table
    /// have to grow: callers size it first, so it does not.
    pub fn insert_unique(&mut self, hash: u64, group: u32, rehash: impl Fn(u32) -> u64) {
        let found = self.find_or_insert(hash, |_| false, group, rehash);
        debug_assert!(found.is_none());
    }

    /// Forget every entry, keeping the memory.
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
    }

    /// Where a probe for `hash` starts: its low bits, apart from the tag.
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// From `hash`'s home slot on: Ok with the slot of the first entry
    /// whose tag is `hash`'s and for whose group `eq` holds, or Err with
    /// the empty slot that ends the probe. The table must have slots.
    #[inline(always)]
    fn probe(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Result<usize, usize> {
        let (mask, want) = (self.slots.len() - 1, tag_bits(hash));
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return Err(i);
            }
            if slot & TAG_MASK == want && eq(group_of(slot)) {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Put `group` in the first empty slot from `hash`'s home on.
    fn place(&mut self, hash: u64, group: u32) {
        let (Ok(empty) | Err(empty)) = self.probe(hash, |_| false);
        self.slots[empty] = tag_bits(hash) | (group as u64 + 1);
    }

    fn grow(&mut self, entries: usize, rehash: impl Fn(u32) -> u64) {
        let old = std::mem::replace(self, SlotTable::with_capacity(entries.max(self.len * 2)));
        for slot in old.slots.into_iter().filter(|&s| s != EMPTY) {
            let group = group_of(slot);
            self.place(rehash(group), group);
        }
        self.len = old.len;
    }
}

const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The hash's high half, in place: the probe starts from the low bits, which
/// the entries a probe passes therefore share.
#[inline(always)]
fn tag_bits(hash: u64) -> u64 {
    hash & TAG_MASK
}

#[inline(always)]
fn group_of(slot: u64) -> u32 {
    (slot as u32).wrapping_sub(1)
}

/// Slots for `entries` at most 7/8 full: a power of two, at least 8.
fn slots_for(entries: usize) -> usize {
    entries
        .div_ceil(7)
        .saturating_mul(8)
        .next_power_of_two()
        .max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash whose low bits, where probes start, are all alike: every
    /// entry collides, so probing runs long and wraps around the end.
    fn clustered(g: u32) -> u64 {
        ((g as u64).wrapping_mul(0x9e37_79b9) << 32) | 5
    }

    #[test]
    fn entries_are_found_by_tag_and_group_through_collisions() {
        let mut t = SlotTable::with_capacity(7);
        assert_eq!((t.capacity(), t.allocation_size()), (7, 64));
        for g in 0..7 {
            t.insert_unique(clustered(g), g, |_| unreachable!("sized for seven"));
        }
        for g in 0..7 {
            assert_eq!(t.find(clustered(g), |found| found == g), Some(g));
        }
        assert_eq!(t.find(clustered(9), |_| true), None);
        // Same tag, another group: eq decides.
        assert_eq!(t.find(clustered(3), |found| found == 4), None);
    }

    #[test]
    fn an_insert_beyond_capacity_grows_by_rehashing_and_clear_keeps_the_memory() {
        let mut t = SlotTable::new();
        assert_eq!((t.capacity(), t.find(7, |_| true)), (0, None));
        for g in 0..1000 {
            t.insert_unique(clustered(g), g, clustered);
        }
        assert_eq!(t.len(), 1000);
        assert!(t.capacity() >= 1000 && t.allocation_size() == SlotTable::bytes_for(1000));
        assert!((0..1000).all(|g| t.find(clustered(g), |f| f == g) == Some(g)));
        let bytes = t.allocation_size();
        t.clear();
        assert_eq!((t.len(), t.allocation_size()), (0, bytes));
        assert_eq!(t.find(clustered(1), |_| true), None);
    }

    #[test]
    fn find_or_insert_finds_an_equal_entry_or_adds_one() {
        let mut t = SlotTable::new();
        // Groups 0..50 under hashes that collide; group g's key is g % 25.
        let mut found = Vec::new();
        for g in 0..50u32 {
            let key = g % 25;
            found.push(t.find_or_insert(
                clustered(key),
                |f| f % 25 == key,
                g,
                |f| clustered(f % 25),
            ));
        }
        assert_eq!(t.len(), 25);
        assert!(found[..25].iter().all(Option::is_none));
        assert_eq!(found[25..], (0..25).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn group_zero_and_the_largest_group_are_not_empty_slots() {
        let mut t = SlotTable::with_capacity(2);
        t.insert_unique(0, 0, |_| unreachable!());
        t.insert_unique(u64::MAX, u32::MAX - 1, |_| unreachable!());
        assert_eq!(t.find(0, |_| true), Some(0));
        assert_eq!(t.find(u64::MAX, |_| true), Some(u32::MAX - 1));
    }
}
