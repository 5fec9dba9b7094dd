//! The group table: distinct keys, each given a dense group index in the
//! order first met. The aggregate's groups and the hash join's build keys
//! both live in one.
//!
//! Keys are arrow-row encodings of the group columns, so every key type,
//! several columns, and NULL (its own group) cost the same code. Each key's
//! bytes live once, in one arena; a hash-table slot holds the key's hash and
//! its group index. A lookup compares hashes in the slots it probes and
//! touches the arena only on a match: on large tables each random access is
//! a cache miss, and they are what a group-by's time goes to.
//!
//! # Memory
//!
//! Everything here grows in steps the caller has reserved for:
//! [`GroupTable::growth_bytes`] says what making room for a batch will
//! allocate, [`GroupTable::make_room`] then allocates exactly that, and
//! interning the batch allocates nothing more. [`GroupTable::size`] is the
//! bytes held, by capacity.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;

use crate::error::Result;

/// Hash-table bytes a slot costs: the hash, the group index (padded to 16)
/// and one control byte.
const SLOT_BYTES: usize = 17;

pub struct GroupTable {
    /// None when there are no group columns: every row is group 0.
    converter: Option<RowConverter>,
    /// (hash, group) of every group.
    table: HashTable<(u64, u32)>,
    /// Per group: where its key starts in `keys` (one entry more than there
    /// are groups).
    offsets: Vec<usize>,
    keys: Vec<u8>,
    hasher: ahash::RandomState,
    /// The length of every key when all key columns have fixed-width
    /// encodings: then group g's key starts at `g * len`, and a probe
    /// reads one cache line fewer (no offset lookup). Known from the
    /// first columns encoded; until then the offsets are used.
    fixed_len: std::sync::OnceLock<Option<usize>>,
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
            table: HashTable::new(),
            offsets: vec![0],
            keys: Vec::new(),
            hasher: ahash::RandomState::with_seeds(
                0x243f_6a88_85a3_08d3 ^ seed,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89 ^ seed.rotate_left(17),
            ),
            fixed_len: std::sync::OnceLock::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
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

    /// Bytes [`make_room`](Self::make_room) will allocate for `rows` more
    /// keys of `key_bytes` bytes in all: new buffers for whatever must grow
    /// (the old ones are already counted in [`size`](Self::size) until
    /// they are freed).
    pub fn growth_bytes(&self, rows: usize, key_bytes: usize) -> usize {
        let groups = self.len() + rows;
        let mut bytes = 0;
        if groups > self.table.capacity() {
            bytes += table_bytes(groups);
        }
        if groups + 1 > self.offsets.capacity() {
            bytes += grown(self.offsets.capacity(), groups + 1) * 8;
        }
        let key_total = self.keys.len() + key_bytes;
        if key_total > self.keys.capacity() {
            bytes += grown(self.keys.capacity(), key_total);
        }
        bytes
    }

    /// Grow every buffer to hold `rows` more keys of `key_bytes` in all,
    /// as [`growth_bytes`](Self::growth_bytes) priced it.
    pub fn make_room(&mut self, rows: usize, key_bytes: usize) {
        let groups = self.len() + rows;
        if groups > self.table.capacity() {
            self.table.reserve(groups - self.table.len(), |&(h, _)| h);
        }
        grow_to(&mut self.offsets, groups + 1);
        let key_total = self.keys.len() + key_bytes;
        grow_to(&mut self.keys, key_total);
    }

    /// The group of each row of `rows` (None: all group 0), new keys added
    /// in the order met. Call [`make_room`](Self::make_room) first.
    pub fn intern(&mut self, rows: Option<&Rows>, count: usize, out: &mut Vec<u32>) {
        out.clear();
        let Some(rows) = rows else {
            self.ensure_global_group();
            out.resize(count, 0);
            return;
        };
        for row in rows.iter() {
            let key = row.as_ref();
            let hash = self.hasher.hash_one(key);
            out.push(self.intern_one(key, hash));
        }
    }

    /// The group of one encoded key whose hash is `hash`.
    pub fn intern_one(&mut self, key: &[u8], hash: u64) -> u32 {
        if let Some(g) = self.find(key, hash) {
            return g;
        }
        let g = self.len() as u32;
        self.keys.extend_from_slice(key);
        self.offsets.push(self.keys.len());
        self.table.insert_unique(hash, (hash, g), |&(h, _)| h);
        g
    }

    /// The group of an encoded key, if it has one.
    pub fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        if let Some(&Some(len)) = self.fixed_len.get() {
            let keys = &self.keys;
            return self
                .table
                .find(hash, |&(h, g)| {
                    let at = g as usize * len;
                    h == hash && keys.get(at..at + len) == Some(key)
                })
                .map(|&(_, g)| g);
        }
        let (offsets, keys) = (&self.offsets, &self.keys);
        self.table
            .find(hash, |&(h, g)| {
                let g = g as usize;
                h == hash && &keys[offsets[g]..offsets[g + 1]] == key
            })
            .map(|&(_, g)| g)
    }

    /// Make group 0 exist without groups columns: a global aggregate has
    /// one row even over no input.
    pub fn ensure_global_group(&mut self) {
        if self.converter.is_none() && self.is_empty() {
            self.offsets.push(0);
        }
    }

    /// Encoded key of group `g`.
    pub fn key(&self, g: usize) -> &[u8] {
        &self.keys[self.offsets[g]..self.offsets[g + 1]]
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

/// Bytes of a hash table sized for `groups` entries (7/8 load, power-of-two
/// buckets).
fn table_bytes(groups: usize) -> usize {
    let buckets = (groups * 8 / 7).next_power_of_two().max(4);
    buckets * SLOT_BYTES + 16
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
    let cap = grown(v.capacity(), need);
    reserve_to(v, cap);
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
