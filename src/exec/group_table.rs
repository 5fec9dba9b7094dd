//! The group table: distinct keys, each given a dense group index in the
//! order first met. The aggregate's groups and the hash join's build keys
//! both live in one.
//!
//! Keys are arrow-row encodings of the group columns, so every key type,
//! several columns, and NULL (its own group) cost the same code. Each key's
//! bytes live once, in one arena; a hash-table slot holds 32 bits of the
//! key's hash and its group index, 8 bytes. A lookup compares those bits in
//! the slots it probes and touches the arena only on a match: on large
//! tables each random access is a cache miss, and they are what a group-by's
//! time goes to. A batch is looked up in two passes, slots first and then
//! keys, each fetching what it will read some rows ahead, so that the
//! misses of one pass overlap instead of each key's waiting on its slot's.
//!
//! # Memory
//!
//! Everything here grows in steps the caller has reserved for:
//! [`GroupTable::growth_bytes`] says what making room for a batch will
//! allocate, [`GroupTable::make_room`] then allocates exactly that, and
//! interning the batch allocates nothing more. [`GroupTable::size`] is the
//! bytes held, by capacity. The key arena grows by a [`Step`] the caller
//! picks: doubling while memory is plentiful, smaller steps when it is not.
//! A group costs its key, 9.1 to 18.3 bytes of slots (8 bytes a slot, at
//! most 7/8 full, see [`SlotTable`]) and, for keys of variable width only,
//! an 8-byte offset.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::Result;
use crate::exec::slot_table::SlotTable;
use crate::exec::{prefetch, PREFETCH_ROWS};

/// No group: groups are numbered from 0 and a table holds fewer than 2^32
/// of them.
pub const NO_GROUP: u32 = u32::MAX;

/// A [`spread`](GroupTable::spread) table has slots for this many times
/// its groups, at most 7/8 full: at most 7/16 full for its groups.
const SPREAD: usize = 2;

pub struct GroupTable {
    /// None when there are no group columns: every row is group 0.
    converter: Option<RowConverter>,
    /// (tag, group) of every group; the tag is the hash's high half, so a
    /// probe touches the key only when those 32 bits agree. The full hash
    /// is not kept: it would double the slot, and growing the table hashes
    /// the keys again instead.
    table: SlotTable,
    groups: usize,
    /// Per group: where its key starts in `keys` (one entry more than there
    /// are groups). Only the first entry when keys have a fixed length.
    offsets: Vec<usize>,
    keys: Vec<u8>,
    hasher: ahash::RandomState,
    /// The length of every key when all key columns have fixed-width
    /// encodings: then group g's key starts at `g * len`, no offsets are
    /// kept (8 bytes a group), and a probe reads one cache line fewer.
    /// Known from the first columns encoded (arrow-row's `SortField` does
    /// not show its type); a table filled without encoding, from spilled
    /// keys, settles on offsets at its first key.
    fixed_len: OnceLock<Option<usize>>,
    /// Whether [`intern`](Self::intern) looks a batch up in two passes:
    /// while at most half of the last batch's rows were new groups.
    two_pass: bool,
}

/// The hash function of a table seeded by `seed`.
fn hasher(seed: u64) -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3 ^ seed,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89 ^ seed.rotate_left(17),
    )
}

impl GroupTable {
    /// A table over keys of `fields`; `seed` picks the hash function, so a
    /// partition can be split again by a hash independent of the one that
    /// formed it.
    pub fn new(fields: Vec<SortField>, seed: u64) -> Result<GroupTable> {
        let converter = if fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(fields)?)
        };
        Ok(GroupTable {
            converter,
            table: SlotTable::new(),
            groups: 0,
            offsets: vec![0],
            keys: Vec::new(),
            hasher: hasher(seed),
            fixed_len: OnceLock::new(),
            two_pass: true,
        })
    }

    pub fn len(&self) -> usize {
        self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash a key's bytes get here.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Encode the key columns of a batch of `rows` rows (None without
    /// group columns).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Option<Rows>> {
        self.fixed_len.get_or_init(|| {
            columns
                .iter()
                .map(|c| fixed_width(c.data_type()).map(|w| w + 1))
                .sum::<Option<usize>>()
                .filter(|&len| len > 0)
        });
        match &self.converter {
            Some(c) => Ok(Some(c.convert_columns(columns)?)),
            None => Ok(None),
        }
    }

    /// Bytes [`make_room`](Self::make_room) holds at its peak beyond
    /// [`size`](Self::size), for `rows` more keys of `key_bytes` bytes in
    /// all; see [`peak_growth`]. The key buffers grow by `step`; the hash
    /// table always doubles.
    pub fn growth_bytes(&self, rows: usize, key_bytes: usize, step: Step) -> usize {
        let mut buffers = Vec::new();
        self.growth(rows, key_bytes, step, &mut buffers);
        peak_growth(&buffers)
    }

    /// The buffers [`make_room`](Self::make_room) will grow, as (old, new)
    /// bytes, in the order it grows them.
    pub fn growth(
        &self,
        rows: usize,
        key_bytes: usize,
        step: Step,
        buffers: &mut Vec<(usize, usize)>,
    ) {
        let groups = self.len() + rows;
        if groups > self.table.capacity() {
            buffers.push((self.table.allocation_size(), SlotTable::bytes_for(groups)));
        }
        if self.fixed_len().is_none() && groups + 1 > self.offsets.capacity() {
            let old = self.offsets.capacity();
            buffers.push((old * 8, step.apply(old, groups + 1) * 8));
        }
        let key_total = self.keys.len() + key_bytes;
        if key_total > self.keys.capacity() {
            let old = self.keys.capacity();
            buffers.push((old, step.apply(old, key_total)));
        }
    }

    /// Grow every buffer to hold `rows` more keys of `key_bytes` in all,
    /// as [`growth_bytes`](Self::growth_bytes) priced it.
    pub fn make_room(&mut self, rows: usize, key_bytes: usize, step: Step) {
        let groups = self.len() + rows;
        if groups > self.table.capacity() {
            self.rebuild_slots(groups);
        }
        if self.layout().is_none() {
            step.grow(&mut self.offsets, groups + 1);
        }
        let key_total = self.keys.len() + key_bytes;
        step.grow(&mut self.keys, key_total);
    }

    /// A new hash table for `entries`, filled group by group: the keys are
    /// read in arena order, where rehashing slot by slot (as hashbrown did
    /// here) reads each key at random, the slots keeping no full hash: a
    /// cache miss each (measured: a 6M-group DISTINCT took 3.6 s, not 2.6).
    fn rebuild_slots(&mut self, entries: usize) {
        let fixed_len = self.layout();
        let (keys, offsets, hasher) = (&self.keys, &self.offsets, &self.hasher);
        let rehash = |g: u32| hasher.hash_one(key_of(keys, offsets, fixed_len, g as usize));
        let mut table = SlotTable::with_capacity(entries);
        let mut hashes = HashesAhead::new(self.groups, |g| rehash(g as u32), &table);
        for g in 0..self.groups {
            let hash = hashes.next(g, &table);
            table.insert_unique(hash, g as u32, rehash);
        }
        self.table = table;
    }

    /// Bytes [`spread`](Self::spread) allocates, none if it would not
    /// change the table.
    pub fn spread_bytes(&self) -> usize {
        if self.groups * SPREAD > self.table.capacity() {
            SlotTable::bytes_for(self.groups * SPREAD)
        } else {
            0
        }
    }

    /// Rehash into a table at most 7/16 full, for lookups that mostly
    /// find nothing: linear probing's misses run to the next empty slot,
    /// about 32 slots in a table 7/8 full and under 3 at 7/16. A hash
    /// join's probe side calls for it when most of its rows have no match
    /// (TPC-H Q5 probes 6M lineitem rows against 227k orders, 85% in vain,
    /// with a table 87% full: 39% of the query's CPU time went to those
    /// lookups). Holds, while it runs, the old table and the new one of
    /// [`spread_bytes`](Self::spread_bytes).
    pub fn spread(&mut self) {
        if self.spread_bytes() > 0 {
            self.rebuild_slots(self.groups * SPREAD);
        }
    }

    /// The group of each row of `rows` (None: all group 0), new keys added
    /// in the order met. Call [`make_room`](Self::make_room) first.
    pub fn intern(&mut self, rows: Option<&Rows>, count: usize, out: &mut Vec<u32>) {
        let Some(rows) = rows else {
            out.clear();
            self.ensure_global_group();
            out.resize(count, 0);
            return;
        };
        self.intern_keys(count, |i| rows.row(i).data(), out);
    }

    /// The group of each of `n` encoded keys, `key(i)` the i-th, new keys
    /// added in the order met: the rows of a batch, or the keys of spilled
    /// partial states. Call [`make_room`](Self::make_room) first.
    pub fn intern_keys<'k>(
        &mut self,
        n: usize,
        key: impl Fn(usize) -> &'k [u8],
        out: &mut Vec<u32>,
    ) {
        let groups_before = self.groups;
        if !self.two_pass {
            self.intern_each(n, |i| Some(key(i)), out);
            self.two_pass = 2 * (self.groups - groups_before) <= n;
            return;
        }
        // Two passes. The first finds each key's likely group from the hash
        // table alone, where a tag agrees, without reading the key. The
        // second reads the keys of those groups to confirm them, and
        // interns the rest in order, so that new groups still number in
        // the order met. Done key by key, each lookup read its slot and
        // then, a cache miss later, the key the slot pointed to; apart,
        // the second pass's reads do not wait on each other. (SF1
        // lineitem's 800k-group GROUP BY: 1.08 s, now 0.96 s.) Where most
        // keys are new groups, which the second pass hashes and looks up
        // again, one pass is cheaper, so the last batch's share of new
        // groups picks.
        self.likely_groups(n, &key, out);
        for i in 0..n {
            if let Some(&ahead) = out.get(i + PREFETCH_ROWS) {
                self.prefetch_key(ahead);
            }
            let k = key(i);
            let g = out[i];
            if g == NO_GROUP || !same_key(self.key(g as usize), k) {
                out[i] = self.intern_one(k, self.hasher.hash_one(k));
            }
        }
        self.two_pass = 2 * (self.groups - groups_before) <= n;
    }

    /// The group of each of `n` encoded keys, `key(i)` the i-th, new keys
    /// added in the order met; in one pass, each key's slot fetched some
    /// keys ahead. A key that is None (a join's NULL key) gets
    /// [`NO_GROUP`]. `out` is cleared first.
    pub fn intern_each<'k>(
        &mut self,
        n: usize,
        key: impl Fn(usize) -> Option<&'k [u8]>,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        let hasher = self.hasher.clone();
        let hash = |i| key(i).map_or(0, |k| hasher.hash_one(k));
        let mut hashes = HashesAhead::new(n, hash, &self.table);
        for i in 0..n {
            let hash = hashes.next(i, &self.table);
            out.push(key(i).map_or(NO_GROUP, |k| self.intern_one(k, hash)));
        }
    }

    /// The group of one encoded key whose hash is `hash`.
    pub fn intern_one(&mut self, key: &[u8], hash: u64) -> u32 {
        let g = self.groups as u32;
        let fixed_len = self.layout();
        debug_assert!(fixed_len.is_none_or(|len| len == key.len()));
        let (keys, offsets, hasher) = (&self.keys, &self.offsets, &self.hasher);
        let found = self.table.find_or_insert(
            hash,
            |g| same_key(key_of(keys, offsets, fixed_len, g as usize), key),
            g,
            |g| hasher.hash_one(key_of(keys, offsets, fixed_len, g as usize)),
        );
        if let Some(found) = found {
            return found;
        }
        self.keys.extend_from_slice(key);
        if fixed_len.is_none() {
            self.offsets.push(self.keys.len());
        }
        self.groups += 1;
        g
    }

    /// The group of each of `rows`, or [`NO_GROUP`]: [`find`](Self::find)
    /// for a batch, in the two passes [`intern`](Self::intern) explains.
    pub fn find_all(&self, rows: &Rows, out: &mut Vec<u32>) {
        self.likely_groups(rows.num_rows(), &|i| rows.row(i).data(), out);
        for (i, row) in rows.iter().enumerate() {
            if let Some(&ahead) = out.get(i + PREFETCH_ROWS) {
                self.prefetch_key(ahead);
            }
            let (key, g) = (row.as_ref(), out[i]);
            if g != NO_GROUP && !same_key(self.key(g as usize), key) {
                // Tags agreed, keys did not: look again, comparing keys.
                out[i] = self.find(key, self.hash(key)).unwrap_or(NO_GROUP);
            }
        }
    }

    /// For each of `n` keys, `key(i)` the i-th, the group whose slot's tag
    /// agrees with the key's hash, or [`NO_GROUP`]: the first of the two
    /// passes, which reads no key. `out` is cleared first.
    fn likely_groups<'k>(&self, n: usize, key: &impl Fn(usize) -> &'k [u8], out: &mut Vec<u32>) {
        out.clear();
        let table = &self.table;
        let mut hashes = HashesAhead::new(n, |i| self.hash(key(i)), table);
        for i in 0..n {
            let likely = table.find(hashes.next(i, table), |_| true);
            out.push(likely.unwrap_or(NO_GROUP));
        }
    }

    /// The group of an encoded key, if it has one.
    pub fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        self.table
            .find(hash, |g| same_key(self.key(g as usize), key))
    }

    /// Forget every key, keeping the memory that held them.
    pub fn clear(&mut self) {
        self.table.clear();
        self.groups = 0;
        self.keys.clear();
        self.offsets.truncate(1);
    }

    /// Let go of the memory an empty table holds.
    pub fn shrink_to_fit(&mut self) {
        debug_assert!(self.is_empty());
        self.table = SlotTable::new();
        self.keys = Vec::new();
        self.offsets.shrink_to_fit();
    }

    /// Hash with `seed` from now on: an emptied table used again for
    /// another partition.
    pub fn reseed(&mut self, seed: u64) {
        debug_assert!(self.is_empty());
        self.hasher = hasher(seed);
    }

    /// Make group 0 exist without groups columns: a global aggregate has
    /// one row even over no input.
    pub fn ensure_global_group(&mut self) {
        if self.converter.is_none() && self.is_empty() {
            self.offsets.push(0);
            self.groups = 1;
        }
    }

    /// Encoded key of group `g`.
    pub fn key(&self, g: usize) -> &[u8] {
        key_of(&self.keys, &self.offsets, self.fixed_len(), g)
    }

    /// Fetch group `g`'s key into cache, or where keys vary in length its
    /// offset; nothing for [`NO_GROUP`].
    fn prefetch_key(&self, g: u32) {
        if g == NO_GROUP {
            return;
        }
        match self.fixed_len() {
            Some(len) => prefetch(&self.keys, g as usize * len),
            None => prefetch(&self.offsets, g as usize),
        }
    }

    /// The fixed key length, if the layout is settled on one.
    fn fixed_len(&self) -> Option<usize> {
        self.fixed_len.get().copied().flatten()
    }

    /// The key layout, settled now if no key was encoded yet.
    fn layout(&mut self) -> Option<usize> {
        *self.fixed_len.get_or_init(|| None)
    }

    /// The hash of group `g`'s key.
    pub fn group_hash(&self, g: usize) -> u64 {
        self.hash(self.key(g))
    }

    /// The key columns of `groups`, in that order.
    pub fn key_columns(&self, groups: impl Iterator<Item = usize>) -> Result<Vec<ArrayRef>> {
        match &self.converter {
            Some(c) => {
                let parser = c.parser();
                let rows = groups.map(|g| parser.parse(self.key(g)));
                Ok(c.convert_rows(rows)?)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Heap bytes held, by capacity.
    pub fn size(&self) -> usize {
        self.table.allocation_size()
            + self.offsets.capacity() * 8
            + self.keys.capacity()
            + self.converter.as_ref().map_or(0, |c| c.size())
    }
}

/// The most that growing `buffers`, given as (old, new) bytes, one after
/// another, holds beyond their old sizes at any moment.
///
/// Each grows by reallocation, which holds the old and the new buffer
/// together until it returns (the allocator may copy; counting on it to
/// remap in place undercounted by the old buffer: a DISTINCT's RSS rose
/// by 50 MB over its reservations). The buffers before it have grown by
/// then, those after it have not. Counting every old and new buffer at
/// once instead, as if all grew together, made the two workers of an
/// 800k-group GROUP BY at 256MB refuse each other and spill.
pub fn peak_growth(buffers: &[(usize, usize)]) -> usize {
    let mut grown = 0usize;
    let mut peak = 0;
    for &(old, new) in buffers {
        peak = peak.max(grown + new);
        grown = (grown + new).saturating_sub(old);
    }
    peak
}

/// Hashes of keys `0..n`, each computed [`PREFETCH_ROWS`] keys before it
/// is used, which is when the slot its lookup starts at is fetched.
struct HashesAhead<F> {
    ring: [u64; PREFETCH_ROWS],
    n: usize,
    hash: F,
}

impl<F: Fn(usize) -> u64> HashesAhead<F> {
    fn new(n: usize, hash: F, table: &SlotTable) -> Self {
        let mut ring = [0; PREFETCH_ROWS];
        for (i, h) in ring.iter_mut().enumerate().take(n) {
            *h = hash(i);
            table.prefetch(*h);
        }
        HashesAhead { ring, n, hash }
    }

    /// The hash of key `i`, for `i` = 0, 1, 2, … in turn.
    #[inline(always)]
    fn next(&mut self, i: usize, table: &SlotTable) -> u64 {
        let at = i % PREFETCH_ROWS;
        let hash = self.ring[at];
        if i + PREFETCH_ROWS < self.n {
            let ahead = (self.hash)(i + PREFETCH_ROWS);
            table.prefetch(ahead);
            self.ring[at] = ahead;
        }
        hash
    }
}

/// Whether two encoded keys are equal. Keys of 4 to 32 bytes (a key of one
/// to three integers) are compared as two words that overlap where the
/// length is not twice a word's, inline: slice equality calls memcmp, whose
/// call and length dispatch cost more than the comparison on keys this
/// short, and a group-by compares a key for every row (memcmp was 6.6% of
/// the bench's GROUP BY).
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    fn words<const W: usize>(a: &[u8], b: &[u8]) -> bool {
        let n = a.len();
        a[..W] == b[..W] && a[n - W..] == b[n - W..]
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..=8 => words::<4>(a, b),
        9..=16 => words::<8>(a, b),
        17..=32 => words::<16>(a, b),
        _ => a == b,
    }
}

/// Group `g`'s key in the arena `keys`.
fn key_of<'a>(keys: &'a [u8], offsets: &[usize], fixed_len: Option<usize>, g: usize) -> &'a [u8] {
    match fixed_len {
        Some(len) => &keys[g * len..(g + 1) * len],
        None => &keys[offsets[g]..offsets[g + 1]],
    }
}

/// How far a buffer grows when it must: by all of its capacity (doubling,
/// which keeps growth amortised), by a half, quarter or eighth of it, or
/// to just what is needed. Smaller steps are for when the budget refuses
/// larger ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Double,
    Fraction(u32),
    Exact,
}

impl Step {
    /// Largest first.
    pub const LADDER: [Step; 5] = [
        Step::Double,
        Step::Fraction(1),
        Step::Fraction(2),
        Step::Fraction(3),
        Step::Exact,
    ];

    /// The capacity a buffer of capacity `cap` gets to hold `need`.
    pub fn apply(self, cap: usize, need: usize) -> usize {
        match self {
            _ if need <= cap => cap,
            Step::Double => grown(cap, need),
            Step::Fraction(shift) => need.max(cap + (cap >> shift)).max(64),
            Step::Exact => need,
        }
    }

    /// Grow `v` to hold `need` elements, by this step.
    pub fn grow<T>(self, v: &mut Vec<T>, need: usize) {
        let cap = self.apply(v.capacity(), need);
        reserve_to(v, cap);
    }
}

/// The capacity a buffer of capacity `cap` gets to hold `need`: doubled at
/// least, so that growth stays amortised.
pub fn grown(cap: usize, need: usize) -> usize {
    if need <= cap {
        cap
    } else {
        need.max(cap * 2).max(64)
    }
}

/// Grow `v` to hold `need` elements, in [`grown`]'s steps.
pub fn grow_to<T>(v: &mut Vec<T>, need: usize) {
    Step::Double.grow(v, need);
}

/// Make `v`'s capacity at least `cap`, exactly.
pub fn reserve_to<T>(v: &mut Vec<T>, cap: usize) {
    if cap > v.capacity() {
        v.reserve_exact(cap - v.len());
    }
}

/// A key column with -0.0 as 0.0 and every NaN the same NaN, so that values
/// SQL calls equal are one key (arrow-row encodes the bits).
/// The byte width of a value of `t` in arrow-row's encoding (after its
/// one-byte null marker), if every value of `t` has the same.
fn fixed_width(t: &DataType) -> Option<usize> {
    use DataType as T;
    Some(match t {
        T::Boolean | T::Int8 | T::UInt8 => 1,
        T::Int16 | T::UInt16 | T::Float16 => 2,
        T::Int32 | T::UInt32 | T::Float32 | T::Date32 | T::Time32(_) => 4,
        T::Int64 | T::UInt64 | T::Float64 | T::Date64 | T::Time64(_) | T::Timestamp(..) => 8,
        T::Duration(_) => 8,
        T::Decimal128(..) => 16,
        T::Decimal256(..) => 32,
        _ => return None,
    })
}

pub fn normalize_key(a: ArrayRef) -> ArrayRef {
    match a.data_type() {
        DataType::Float64 => Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(|x| if x.is_nan() { f64::NAN } else { x + 0.0 }),
        ),
        DataType::Float32 => Arc::new(
            a.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|x| if x.is_nan() { f32::NAN } else { x + 0.0 }),
        ),
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn steps_shrink_from_doubling_to_the_need() {
        let sizes: Vec<usize> = Step::LADDER.iter().map(|s| s.apply(1000, 1010)).collect();
        assert_eq!(sizes, [2000, 1500, 1250, 1125, 1010]);
        // A step never gives less than the need, and nothing when it fits.
        assert_eq!(Step::Fraction(3).apply(1000, 1300), 1300);
        assert_eq!(Step::Double.apply(1000, 900), 1000);
    }

    #[test]
    fn growth_peaks_while_the_last_buffer_holds_old_and_new() {
        assert_eq!(peak_growth(&[]), 0);
        assert_eq!(peak_growth(&[(10, 20)]), 20);
        // The small one has grown by 1 when the large one holds 100 + 200.
        assert_eq!(peak_growth(&[(1, 2), (100, 200)]), 201);
        // The large one first: its old buffer is gone when the small grows.
        assert_eq!(peak_growth(&[(100, 200), (1, 2)]), 200);
    }

    #[test]
    fn keys_compared_as_words_differ_wherever_a_byte_does() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(same_key(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!same_key(&a, &b), "length {len}, byte {at}");
            }
            assert!(!same_key(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }

    #[test]
    fn a_cleared_table_forgets_its_keys_and_keeps_its_memory() {
        let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let mut table = GroupTable::new(vec![SortField::new(DataType::Int64)], 0).unwrap();
        let rows = table.encode(&[ints]).unwrap().unwrap();
        let mut groups = Vec::new();
        table.make_room(1000, rows.size(), Step::Double);
        table.intern(Some(&rows), 1000, &mut groups);
        let size = table.size();
        table.clear();
        assert_eq!((table.len(), table.size()), (0, size));
        let (old, new) = (rows.row(7), rows.row(500));
        assert_eq!(table.find(old.as_ref(), table.hash(old.as_ref())), None);
        assert_eq!(table.intern_one(new.as_ref(), table.hash(new.as_ref())), 0);
        assert_eq!(table.key(0), new.as_ref());
    }

    /// Batches of new keys, of old and new, and of old keys with repeats
    /// get the groups a map numbering keys as met gives, looked up in one
    /// pass or two; `find_all` agrees and finds no group for keys never
    /// interned.
    #[test]
    fn batch_lookups_in_one_pass_or_two_give_the_groups_in_order_met() {
        let batches: Vec<Vec<i64>> = vec![
            (0..1000).collect(),
            (500..1500).collect(),
            (0..1500).rev().map(|i| i * 7 % 1500).collect(),
            (0..1500).map(|i| i % 3 * 1000 + i).collect(),
        ];
        let mut table = GroupTable::new(vec![SortField::new(DataType::Int64)], 3).unwrap();
        let mut reference = std::collections::HashMap::new();
        let mut modes = Vec::new();
        let mut groups = Vec::new();
        for batch in &batches {
            let column: ArrayRef = Arc::new(Int64Array::from(batch.clone()));
            let rows = table.encode(&[column]).unwrap().unwrap();
            table.make_room(batch.len(), rows.size(), Step::Double);
            modes.push(table.two_pass);
            table.intern(Some(&rows), batch.len(), &mut groups);
            let expected: Vec<u32> = batch
                .iter()
                .map(|k| {
                    let next = reference.len() as u32;
                    *reference.entry(*k).or_insert(next)
                })
                .collect();
            assert_eq!(groups, expected);
        }
        // The first batch was all new, so the second went in one pass.
        assert_eq!(modes, [true, false, true, true]);
        let probe: ArrayRef = Arc::new(Int64Array::from_iter_values(2990..3010));
        let rows = table.encode(&[probe]).unwrap().unwrap();
        table.find_all(&rows, &mut groups);
        let expected: Vec<u32> = (2990..3010)
            .map(|k| reference.get(&k).copied().unwrap_or(NO_GROUP))
            .collect();
        assert_eq!(groups, expected);
        assert!(expected.contains(&NO_GROUP) && expected.iter().any(|&g| g != NO_GROUP));
    }

    /// A spread table finds the same groups, and nothing for keys never
    /// interned, from a table at most 7/16 full; spreading again changes
    /// nothing.
    #[test]
    fn a_spread_table_finds_the_same_groups_in_more_slots() {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1700));
        let mut table = GroupTable::new(vec![SortField::new(DataType::Int64)], 5).unwrap();
        let rows = table.encode(&[keys]).unwrap().unwrap();
        let mut groups = Vec::new();
        table.make_room(1700, rows.size(), Step::Double);
        table.intern(Some(&rows), 1700, &mut groups);
        // 1700 groups in 2048 slots: 83% full.
        assert_eq!(table.table.allocation_size(), 2048 * 8);
        let probe: ArrayRef = Arc::new(Int64Array::from_iter_values(1000..5000));
        let probe = table.encode(&[probe]).unwrap().unwrap();
        let mut before = Vec::new();
        table.find_all(&probe, &mut before);
        let bytes = table.spread_bytes();
        assert_eq!(bytes, 4096 * 8);
        table.spread();
        assert_eq!(table.table.allocation_size(), bytes);
        assert!(
            table.len() * 16 <= table.table.allocation_size() / 8 * 7,
            "at most 7/16 full"
        );
        let mut after = Vec::new();
        table.find_all(&probe, &mut after);
        assert_eq!(after, before);
        let expected: Vec<u32> = (1000..5000)
            .map(|k| if k < 1700 { k } else { NO_GROUP })
            .collect();
        assert_eq!(after, expected);
        assert_eq!(table.spread_bytes(), 0);
    }

    /// Keys interned across many growths (which rehash from the keys
    /// alone, the slots keeping only a tag) are all found again, with
    /// fixed-width and variable-width keys.
    #[test]
    fn keys_survive_growth_by_every_step() {
        let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..5000));
        let texts: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..5000).map(|i| "x".repeat(i % 7) + &i.to_string()),
        ));
        for columns in [vec![ints.clone()], vec![ints, texts]] {
            let fields = columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            let mut table = GroupTable::new(fields, 7).unwrap();
            let rows = table.encode(&columns).unwrap().unwrap();
            let mut groups = Vec::new();
            for (i, chunk) in (0..rows.num_rows())
                .collect::<Vec<_>>()
                .chunks(300)
                .enumerate()
            {
                let step = Step::LADDER[i % Step::LADDER.len()];
                let bytes = chunk.iter().map(|&r| rows.row(r).as_ref().len()).sum();
                table.make_room(chunk.len(), bytes, step);
                for &r in chunk {
                    let key = rows.row(r);
                    groups.push(table.intern_one(key.as_ref(), table.hash(key.as_ref())));
                }
            }
            assert_eq!(groups, (0..5000).collect::<Vec<u32>>());
            for r in 0..rows.num_rows() {
                let key = rows.row(r);
                assert_eq!(
                    table.find(key.as_ref(), table.hash(key.as_ref())),
                    Some(r as u32)
                );
                assert_eq!(table.key(r), key.as_ref());
            }
        }
    }
}
