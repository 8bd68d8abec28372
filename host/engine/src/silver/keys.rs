//! The keys Silver remembers while it streams a table through its rules:
//! the keys already seen (the first row with a key is kept) and each
//! parent's keys, with the row each one is on for the columns children
//! take. Integer and date keys live in a bitmap (a set) or an array of
//! positions (a map) over their range while the range is dense, and in a
//! hash table once it is not; text keys in a hash table. Memory follows the
//! number of keys, never the rows' other columns: 180 million dense integer
//! keys are a 22 MB bitmap. Bitmaps and arrays past the keys' share of the
//! budget are files in the scratch folder, mapped ([`Slab`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType;
use foldhash::fast::RandomState;

use super::spill::{KeyMemory, Slab};

/// One key: a row's value in a key column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Key<'a> {
    /// No value.
    Null,
    /// An integer or a date (days since 1970).
    Int(i64),
    /// Text.
    Text(&'a str),
}

/// What a key column holds; a child's column and its parent's key must be
/// of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// Integers of any width.
    Int,
    /// Dates.
    Date,
    /// Instants (timestamps of any unit and zone, as stored).
    Timestamp,
    /// Text.
    Text,
}

impl KeyKind {
    /// The kind of a column of type `data_type`, or `None` when it cannot be
    /// a key.
    pub(super) fn of(data_type: &DataType) -> Option<KeyKind> {
        use DataType::*;
        match data_type {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Some(KeyKind::Int),
            Date32 => Some(KeyKind::Date),
            Timestamp(..) => Some(KeyKind::Timestamp),
            Utf8 | LargeUtf8 | Utf8View => Some(KeyKind::Text),
            _ => None,
        }
    }
}

/// A batch's key column, read row by row as [`Key`]s.
pub(super) enum KeyColumn {
    Int(Int64Array),
    Text(StringArray),
    LargeText(LargeStringArray),
    View(StringViewArray),
}

impl KeyColumn {
    /// Reads `array`; it must be of a [`KeyKind`].
    pub(super) fn new(array: &ArrayRef) -> Result<KeyColumn, String> {
        Ok(match array.data_type() {
            DataType::Utf8 => KeyColumn::Text(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => KeyColumn::LargeText(array.as_string::<i64>().clone()),
            DataType::Utf8View => KeyColumn::View(array.as_string_view().clone()),
            other if KeyKind::of(other).is_some() => {
                let ints = arrow_cast::cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
                KeyColumn::Int(ints.as_primitive::<Int64Type>().clone())
            }
            other => return Err(format!("a key column must hold integers, dates, timestamps or text, not {other}")),
        })
    }

    /// The key on `row`, as an error message shows it.
    pub(super) fn describe(&self, row: usize) -> String {
        match self.get(row) {
            Key::Null => "null".to_owned(),
            Key::Int(k) => k.to_string(),
            Key::Text(text) => format!("{text:?}"),
        }
    }

    /// The key on `row`.
    pub(super) fn get(&self, row: usize) -> Key<'_> {
        let null = match self {
            KeyColumn::Int(a) => a.is_null(row),
            KeyColumn::Text(a) => a.is_null(row),
            KeyColumn::LargeText(a) => a.is_null(row),
            KeyColumn::View(a) => a.is_null(row),
        };
        if null {
            return Key::Null;
        }
        match self {
            KeyColumn::Int(a) => Key::Int(a.value(row)),
            KeyColumn::Text(a) => Key::Text(a.value(row)),
            KeyColumn::LargeText(a) => Key::Text(a.value(row)),
            KeyColumn::View(a) => Key::Text(a.value(row)),
        }
    }
}

/// Dense integer ranges never cost more than this many bits a key present
/// (past a small start).
const SET_BITS_PER_KEY: u64 = 64;
/// Slots of a dense map: at most this many per key present.
const MAP_SLOTS_PER_KEY: u64 = 4;
/// Ranges this short stay dense whatever their density.
const DENSE_START: u64 = 1 << 16;

/// A set of keys. A null key is a value for [`KeySet::insert`] (the first
/// null is new, the next ones are not) and never found by
/// [`KeySet::contains`].
pub(super) struct KeySet {
    ints: IntSet,
    text: HashSet<Box<str>, RandomState>,
    null: bool,
}

/// Integer keys: a bitmap over a range while the range stays dense (bit
/// `k - lo` set when `k` is in), and the keys outside it in a hash set. The
/// range grows to take in a key when it stays dense enough counting every
/// key held, and then the hash set's keys inside it move in: a few outliers
/// early on do not turn millions of dense keys into a hash table.
struct IntSet {
    memory: Arc<KeyMemory>,
    lo: i64,
    bits: Slab<u64>,
    /// Keys in `bits`.
    dense: u64,
    outside: HashSet<i64, RandomState>,
    /// When `outside` holds this many keys, the range is chosen again.
    rebase_at: usize,
}

impl KeySet {
    /// An empty set whose bitmap lives where `memory` has room.
    pub(super) fn new(memory: &Arc<KeyMemory>) -> KeySet {
        KeySet { ints: IntSet::new(memory), text: HashSet::default(), null: false }
    }

    /// Adds `key`; true when it was not in the set.
    pub(super) fn insert(&mut self, key: Key<'_>) -> bool {
        match key {
            Key::Null => !std::mem::replace(&mut self.null, true),
            Key::Text(text) => !self.text.contains(text) && self.text.insert(text.into()),
            Key::Int(k) => self.ints.insert(k),
        }
    }

    /// Whether `key` is in the set (a null key never is).
    pub(super) fn contains(&self, key: Key<'_>) -> bool {
        match key {
            Key::Null => false,
            Key::Text(text) => self.text.contains(text),
            Key::Int(k) => self.ints.contains(k),
        }
    }
}

impl IntSet {
    fn new(memory: &Arc<KeyMemory>) -> IntSet {
        IntSet {
            memory: memory.clone(),
            lo: 0,
            bits: Slab::default(),
            dense: 0,
            outside: HashSet::default(),
            rebase_at: 0,
        }
    }

    fn offset(&self, k: i64) -> Option<u64> {
        let offset = u64::try_from(k.checked_sub(self.lo)?).ok()?;
        (offset < self.bits.len() as u64 * 64).then_some(offset)
    }

    fn contains(&self, k: i64) -> bool {
        match self.offset(k) {
            Some(offset) => self.bits[(offset / 64) as usize] & (1 << (offset % 64)) != 0,
            None => self.outside.contains(&k),
        }
    }

    /// Sets the bit of `k`, inside the range; true when it was not set.
    fn set(&mut self, offset: u64) -> bool {
        let (word, bit) = ((offset / 64) as usize, 1u64 << (offset % 64));
        let new = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.dense += u64::from(new);
        new
    }

    fn insert(&mut self, k: i64) -> bool {
        if let Some(offset) = self.offset(k) {
            return self.set(offset);
        }
        if self.outside.contains(&k) {
            return false;
        }
        if self.bits.is_empty() {
            self.lo = k.div_euclid(64).saturating_mul(64);
        }
        let held = self.dense + self.outside.len() as u64 + 1;
        match fit(self.lo, self.bits.len() as u64 * 64, k, 64, held.saturating_mul(SET_BITS_PER_KEY)) {
            Fit::Grow { lo, span } => {
                let shift = ((self.lo - lo) / 64) as usize;
                let mut grown = Slab::zeroed(&self.memory, (span / 64) as usize);
                grown[shift..shift + self.bits.len()].copy_from_slice(&self.bits);
                (self.lo, self.bits) = (lo, grown);
                let outside = std::mem::take(&mut self.outside);
                for key in outside {
                    match self.offset(key) {
                        Some(offset) => {
                            self.set(offset);
                        }
                        None => {
                            self.outside.insert(key);
                        }
                    }
                }
                self.insert(k)
            }
            Fit::TooSparse => {
                self.outside.insert(k);
                if self.outside.len() >= self.rebase_at.max(REBASE_START) {
                    self.rebase();
                }
                true
            }
        }
    }

    /// Chooses the range again: the densest run of all the keys held (an
    /// early outlier had fixed it far from the rest).
    fn rebase(&mut self) {
        let mut keys: Vec<i64> = self.outside.drain().collect();
        for (w, word) in self.bits.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                keys.push(self.lo + (w as i64) * 64 + i64::from(word.trailing_zeros()));
                word &= word - 1;
            }
        }
        keys.sort_unstable();
        let (from, to) = densest(&keys, (keys.len() as u64).saturating_mul(SET_BITS_PER_KEY));
        self.lo = keys[from].div_euclid(64).saturating_mul(64);
        let span = (keys[to - 1] as i128 - self.lo as i128 + 1) as u64;
        self.bits = Slab::default();
        self.bits = Slab::zeroed(&self.memory, span.next_multiple_of(64) as usize / 64);
        self.dense = 0;
        for (i, k) in keys.iter().enumerate() {
            if (from..to).contains(&i) {
                self.set((k - self.lo) as u64);
            } else {
                self.outside.insert(*k);
            }
        }
        self.rebase_at = 2 * self.outside.len();
    }
}

/// Keys outside the range before it is first chosen again.
const REBASE_START: usize = 1 << 12;

/// The run `[from, to)` of sorted `keys` with the most keys whose values
/// span at most `limit` (at least [`DENSE_START`]).
fn densest(keys: &[i64], limit: u64) -> (usize, usize) {
    let limit = limit.max(DENSE_START) as i128;
    let (mut best, mut from) = ((0, 0), 0);
    for to in 0..keys.len() {
        while keys[to] as i128 - keys[from] as i128 >= limit {
            from += 1;
        }
        if to + 1 - from > best.1 - best.0 {
            best = (from, to + 1);
        }
    }
    best
}

/// What to do with a key outside a dense range `[lo, lo + span)` of
/// `unit`-aligned storage that may cover `limit` values.
enum Fit {
    /// Past the range: grow it to this one (doubling, within the limit,
    /// `unit`-aligned).
    Grow { lo: i64, span: u64 },
    /// The range it needs would be too sparse.
    TooSparse,
}

fn fit(lo: i64, span: u64, k: i64, unit: u64, limit: u64) -> Fit {
    let hi = lo as i128 + span as i128;
    debug_assert!((k as i128) < lo as i128 || (k as i128) >= hi, "callers look inside the range first");
    let limit = limit.max(DENSE_START);
    let needed_lo = (k as i128).min(lo as i128);
    let needed_hi = (k as i128 + 1).max(hi);
    let needed = needed_hi - needed_lo;
    if needed > limit as i128 {
        return Fit::TooSparse;
    }
    let span = (needed as u64).max(span.saturating_mul(2).min(limit)).next_multiple_of(unit);
    // Slack on the side the key came from.
    let lo = if (k as i128) < lo as i128 { needed_hi - span as i128 } else { needed_lo };
    let lo = (lo.div_euclid(unit as i128) * unit as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let span = (needed_hi - lo as i128).max(span as i128) as u64;
    Fit::Grow { lo, span: span.next_multiple_of(unit) }
}

/// Keys to positions (the row a key is on, counted from 0 over the table).
/// A key found on several rows keeps its first; null keys are not kept.
pub(super) struct KeyMap {
    ints: IntMap,
    text: HashMap<Box<str>, u32, RandomState>,
}

/// Integer keys to positions: an array of positions over a dense range
/// (slot `k - lo` holds the position plus one, 0 when `k` is not held, so
/// that a new array is all zeroes) and a hash map for the keys outside it,
/// grown as [`IntSet`] is.
struct IntMap {
    memory: Arc<KeyMemory>,
    lo: i64,
    slots: Slab<u32>,
    /// Keys in `slots`.
    dense: u64,
    outside: HashMap<i64, u32, RandomState>,
    /// When `outside` holds this many keys, the range is chosen again.
    rebase_at: usize,
}

/// A slot of no key.
const NONE: u32 = 0;

impl KeyMap {
    /// An empty map whose array lives where `memory` has room.
    pub(super) fn new(memory: &Arc<KeyMemory>) -> KeyMap {
        KeyMap { ints: IntMap::new(memory), text: HashMap::default() }
    }

    /// Notes that `key` is on row `position` (below `u32::MAX`), unless it
    /// was seen before; false when it was (a null key is never kept, and
    /// always new).
    pub(super) fn insert(&mut self, key: Key<'_>, position: u32) -> bool {
        debug_assert!(position != u32::MAX);
        match key {
            Key::Null => true,
            Key::Text(text) => {
                if self.text.contains_key(text) {
                    return false;
                }
                self.text.insert(text.into(), position);
                true
            }
            Key::Int(k) => self.ints.insert(k, position),
        }
    }

    /// The row `key` is on.
    pub(super) fn get(&self, key: Key<'_>) -> Option<u32> {
        match key {
            Key::Null => None,
            Key::Text(text) => self.text.get(text).copied(),
            Key::Int(k) => self.ints.get(k),
        }
    }
}

impl IntMap {
    fn new(memory: &Arc<KeyMemory>) -> IntMap {
        IntMap {
            memory: memory.clone(),
            lo: 0,
            slots: Slab::default(),
            dense: 0,
            outside: HashMap::default(),
            rebase_at: 0,
        }
    }

    fn offset(&self, k: i64) -> Option<usize> {
        let offset = usize::try_from(k.checked_sub(self.lo)?).ok()?;
        (offset < self.slots.len()).then_some(offset)
    }

    fn get(&self, k: i64) -> Option<u32> {
        match self.offset(k) {
            Some(offset) => self.slots[offset].checked_sub(1),
            None => self.outside.get(&k).copied(),
        }
    }

    fn insert(&mut self, k: i64, position: u32) -> bool {
        if let Some(offset) = self.offset(k) {
            let slot = &mut self.slots[offset];
            if *slot != NONE {
                return false;
            }
            *slot = position + 1;
            self.dense += 1;
            return true;
        }
        if self.outside.contains_key(&k) {
            return false;
        }
        if self.slots.is_empty() {
            self.lo = k;
        }
        let held = self.dense + self.outside.len() as u64 + 1;
        match fit(self.lo, self.slots.len() as u64, k, 1, held.saturating_mul(MAP_SLOTS_PER_KEY)) {
            Fit::Grow { lo, span } => {
                let shift = (self.lo - lo) as usize;
                let mut grown = Slab::zeroed(&self.memory, span as usize);
                grown[shift..shift + self.slots.len()].copy_from_slice(&self.slots);
                (self.lo, self.slots) = (lo, grown);
                let outside = std::mem::take(&mut self.outside);
                for (key, at) in outside {
                    match self.offset(key) {
                        Some(offset) => {
                            self.slots[offset] = at + 1;
                            self.dense += 1;
                        }
                        None => {
                            self.outside.insert(key, at);
                        }
                    }
                }
                self.insert(k, position)
            }
            Fit::TooSparse => {
                self.outside.insert(k, position);
                if self.outside.len() >= self.rebase_at.max(REBASE_START) {
                    self.rebase();
                }
                true
            }
        }
    }

    /// As [`IntSet::rebase`].
    fn rebase(&mut self) {
        let mut keys: Vec<(i64, u32)> = self.outside.drain().collect();
        for (offset, slot) in self.slots.iter().enumerate() {
            if *slot != NONE {
                keys.push((self.lo + offset as i64, *slot - 1));
            }
        }
        keys.sort_unstable();
        let values: Vec<i64> = keys.iter().map(|(k, _)| *k).collect();
        let (from, to) = densest(&values, (keys.len() as u64).saturating_mul(MAP_SLOTS_PER_KEY));
        drop(values);
        self.lo = keys[from].0;
        self.slots = Slab::default();
        self.slots = Slab::zeroed(&self.memory, (keys[to - 1].0 - self.lo + 1) as usize);
        self.dense = 0;
        for (i, (k, at)) in keys.into_iter().enumerate() {
            if (from..to).contains(&i) {
                self.slots[(k - self.lo) as usize] = at + 1;
                self.dense += 1;
            } else {
                self.outside.insert(k, at);
            }
        }
        self.rebase_at = 2 * self.outside.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both homes of the bitmaps and arrays: the heap, and files (a share of
    /// nothing: every one spills).
    fn memories() -> [(Arc<KeyMemory>, Option<tempfile::TempDir>); 2] {
        let dir = tempfile::tempdir().unwrap();
        [(KeyMemory::unbounded(), None), (KeyMemory::new(0, dir.path().join("keys")), Some(dir))]
    }

    /// Keys that start dense and then jump far: both representations, and
    /// the switch between them, against a plain hash set.
    fn keys() -> Vec<i64> {
        let mut keys: Vec<i64> = (0..5_000).map(|i| 1_000 + (i * 7919) % 5_000).collect();
        keys.extend([-3, 999, 6_000, 1_000, -3, i64::MAX, i64::MIN, 0, 5_999]);
        keys.extend((0..3_000).map(|i| i * 1_000_003));
        keys.extend((0..100).map(|i| 2_000 - i));
        keys
    }

    #[test]
    fn a_key_set_agrees_with_a_hash_set() {
        for (memory, _dir) in memories() {
            a_key_set_agrees_with_a_hash_set_in(&memory);
        }
    }

    fn a_key_set_agrees_with_a_hash_set_in(memory: &Arc<KeyMemory>) {
        let mut set = KeySet::new(memory);
        let mut plain = std::collections::HashSet::new();
        for k in keys() {
            assert_eq!(set.insert(Key::Int(k)), plain.insert(k), "inserting {k}");
        }
        for k in keys().into_iter().chain([-1, 7, 1_000_002, 42_000_000_000]) {
            assert_eq!(set.contains(Key::Int(k)), plain.contains(&k), "looking up {k}");
        }
        assert!(!set.ints.outside.is_empty(), "the far keys are outside the bitmap");
        assert!(set.insert(Key::Null) && !set.insert(Key::Null) && !set.contains(Key::Null));
        assert!(set.insert(Key::Text("a")) && !set.insert(Key::Text("a")) && set.contains(Key::Text("a")));
        assert!(!set.contains(Key::Text("b")));
    }

    #[test]
    fn dense_keys_stay_a_bitmap() {
        let mut set = KeySet::new(&KeyMemory::unbounded());
        for k in (0..1_000_000i64).rev().chain(1_000_000..2_000_000) {
            assert!(set.insert(Key::Int(k + 500)));
        }
        let IntSet { bits, dense, outside, .. } = &set.ints;
        assert_eq!((*dense, outside.len()), (2_000_000, 0));
        assert!(bits.len() * 64 <= 4 * 2_000_000 + 128, "{} words", bits.len());
        assert!(set.contains(Key::Int(500)) && set.contains(Key::Int(2_000_499)) && !set.contains(Key::Int(499)));
    }

    #[test]
    fn an_early_outlier_does_not_make_dense_keys_a_hash_set() {
        for (memory, _dir) in memories() {
            an_early_outlier_does_not_make_dense_keys_a_hash_set_in(&memory);
        }
    }

    fn an_early_outlier_does_not_make_dense_keys_a_hash_set_in(memory: &Arc<KeyMemory>) {
        let mut set = KeySet::new(memory);
        let mut map = KeyMap::new(memory);
        for (position, k) in [4_000_000_000_000i64, -7].into_iter().chain(1..1_000_000).enumerate() {
            assert!(set.insert(Key::Int(k)));
            assert!(map.insert(Key::Int(k), position as u32));
        }
        assert_eq!(set.ints.outside.len(), 1, "only the outlier is outside");
        assert!(set.ints.bits.len() * 64 < 4 * 1_000_000);
        assert!(map.ints.outside.len() <= 1 && map.ints.slots.len() < 4 * 1_000_000);
        for k in [4_000_000_000_000i64, -7, 1, 999_999] {
            assert!(set.contains(Key::Int(k)) && map.get(Key::Int(k)).is_some(), "{k}");
        }
        assert_eq!(map.get(Key::Int(-7)), Some(1));
        assert_eq!(map.get(Key::Int(5)), Some(6));
        assert!(!set.contains(Key::Int(0)) && map.get(Key::Int(1_000_000)).is_none());
    }

    #[test]
    fn a_key_map_keeps_each_keys_first_position() {
        for (memory, _dir) in memories() {
            a_key_map_keeps_each_keys_first_position_in(&memory);
        }
    }

    fn a_key_map_keeps_each_keys_first_position_in(memory: &Arc<KeyMemory>) {
        let mut map = KeyMap::new(memory);
        let mut plain = std::collections::HashMap::new();
        for (position, k) in keys().into_iter().enumerate() {
            let new = !plain.contains_key(&k);
            assert_eq!(map.insert(Key::Int(k), position as u32), new, "inserting {k}");
            plain.entry(k).or_insert(position as u32);
        }
        for k in keys().into_iter().chain([-1, 7, 42_000_000_000]) {
            assert_eq!(map.get(Key::Int(k)), plain.get(&k).copied(), "looking up {k}");
        }
        map.insert(Key::Null, 1);
        assert_eq!(map.get(Key::Null), None);
        map.insert(Key::Text("x"), 4);
        map.insert(Key::Text("x"), 5);
        assert_eq!(map.get(Key::Text("x")), Some(4));
        let mut dense = KeyMap::new(memory);
        for k in (0..10_000i64).rev() {
            dense.insert(Key::Int(k), k as u32);
        }
        assert!(dense.ints.outside.is_empty());
        assert_eq!(dense.get(Key::Int(1234)), Some(1234));
    }

    #[test]
    fn key_columns_read_every_kind() {
        let ints: ArrayRef = std::sync::Arc::new(arrow_array::Int32Array::from(vec![Some(3), None]));
        let column = KeyColumn::new(&ints).unwrap();
        assert_eq!((column.get(0), column.get(1)), (Key::Int(3), Key::Null));
        let dates: ArrayRef = std::sync::Arc::new(arrow_array::Date32Array::from(vec![19_000]));
        assert_eq!(KeyColumn::new(&dates).unwrap().get(0), Key::Int(19_000));
        let instants: ArrayRef =
            std::sync::Arc::new(arrow_array::TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]));
        assert_eq!(KeyColumn::new(&instants).unwrap().get(0), Key::Int(1_700_000_000_000_000));
        assert_eq!(KeyKind::of(instants.data_type()), Some(KeyKind::Timestamp));
        let text: ArrayRef = std::sync::Arc::new(LargeStringArray::from(vec![Some("a"), None]));
        let column = KeyColumn::new(&text).unwrap();
        assert_eq!((column.get(0), column.get(1)), (Key::Text("a"), Key::Null));
        let floats: ArrayRef = std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.0]));
        assert!(KeyColumn::new(&floats).err().unwrap().contains("Float64"));
    }
}
