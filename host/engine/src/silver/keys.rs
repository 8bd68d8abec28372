//! The keys Silver remembers while it streams a table through its rules:
//! the keys already seen (the first row with a key is kept) and each
//! parent's keys, with the row each one is on for the columns children
//! take. Integer and date keys live in a bitmap (a set) or an array of
//! positions (a map) over their range while the range is dense, and in a
//! hash table once it is not; text keys in a hash table. Memory follows the
//! number of keys, never the rows' other columns: 180 million dense integer
//! keys are a 22 MB bitmap.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType;
use foldhash::fast::RandomState;

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
            other => return Err(format!("a key column must hold integers, dates or text, not {other}")),
        })
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
#[derive(Default)]
pub(super) struct KeySet {
    ints: IntSet,
    text: HashSet<Box<str>, RandomState>,
    null: bool,
}

enum IntSet {
    /// Bit `k - lo` is set when `k` is in the set; `len` keys are.
    Dense {
        lo: i64,
        bits: Vec<u64>,
        len: u64,
    },
    Sparse(HashSet<i64, RandomState>),
}

impl Default for IntSet {
    fn default() -> Self {
        IntSet::Dense { lo: 0, bits: Vec::new(), len: 0 }
    }
}

impl KeySet {
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
            Key::Int(k) => match &self.ints {
                IntSet::Dense { lo, bits, .. } => {
                    let Some(offset) = k.checked_sub(*lo).and_then(|o| u64::try_from(o).ok()) else { return false };
                    bits.get((offset / 64) as usize).is_some_and(|word| word & (1 << (offset % 64)) != 0)
                }
                IntSet::Sparse(set) => set.contains(&k),
            },
        }
    }
}

impl IntSet {
    fn insert(&mut self, k: i64) -> bool {
        if let IntSet::Dense { lo, bits, len } = self {
            if bits.is_empty() {
                *lo = k.div_euclid(64).saturating_mul(64);
            }
            let span = bits.len() as u64 * 64;
            match fit(*lo, span, k, 64, (*len + 1).saturating_mul(SET_BITS_PER_KEY)) {
                Fit::Inside(offset) => {
                    let (word, bit) = ((offset / 64) as usize, 1u64 << (offset % 64));
                    let new = bits[word] & bit == 0;
                    bits[word] |= bit;
                    *len += u64::from(new);
                    return new;
                }
                Fit::Grow { lo: new_lo, span: new_span } => {
                    let shift = ((*lo - new_lo) / 64) as usize;
                    let mut grown = vec![0u64; (new_span / 64) as usize];
                    grown[shift..shift + bits.len()].copy_from_slice(bits);
                    (*lo, *bits) = (new_lo, grown);
                    return self.insert(k);
                }
                Fit::TooSparse => {
                    let mut set = HashSet::with_capacity_and_hasher(*len as usize + 1, RandomState::default());
                    for (w, word) in bits.iter().enumerate() {
                        let mut word = *word;
                        while word != 0 {
                            set.insert(*lo + (w as i64) * 64 + i64::from(word.trailing_zeros()));
                            word &= word - 1;
                        }
                    }
                    *self = IntSet::Sparse(set);
                }
            }
        }
        match self {
            IntSet::Sparse(set) => set.insert(k),
            IntSet::Dense { .. } => unreachable!("a dense set that refuses a key turns sparse"),
        }
    }
}

/// Where a key falls in a dense range `[lo, lo + span)` of `unit`-aligned
/// storage that may grow to `limit` keys.
enum Fit {
    /// At this offset.
    Inside(u64),
    /// Past the range: grow it to this one (at least double, `unit`-aligned).
    Grow { lo: i64, span: u64 },
    /// The range it needs would be too sparse.
    TooSparse,
}

fn fit(lo: i64, span: u64, k: i64, unit: u64, limit: u64) -> Fit {
    let hi = lo as i128 + span as i128;
    if (k as i128) >= lo as i128 && (k as i128) < hi {
        return Fit::Inside((k as i128 - lo as i128) as u64);
    }
    let needed_lo = (k as i128).min(lo as i128);
    let needed_hi = (k as i128 + 1).max(hi);
    let needed = needed_hi - needed_lo;
    if needed > limit.max(DENSE_START) as i128 {
        return Fit::TooSparse;
    }
    let span = (needed as u64).max(span.saturating_mul(2)).next_multiple_of(unit);
    // Slack on the side the key came from.
    let lo = if (k as i128) < lo as i128 { needed_hi - span as i128 } else { needed_lo };
    let lo = (lo.div_euclid(unit as i128) * unit as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let span = (needed_hi - lo as i128).max(span as i128) as u64;
    Fit::Grow { lo, span: span.next_multiple_of(unit) }
}

/// Keys to positions (the row a key is on, counted from 0 over the table).
/// A key found on several rows keeps its first; null keys are not kept.
#[derive(Default)]
pub(super) struct KeyMap {
    ints: IntMap,
    text: HashMap<Box<str>, u32, RandomState>,
}

enum IntMap {
    /// Slot `k - lo` holds `k`'s position, or `NONE`; `len` keys are held.
    Dense {
        lo: i64,
        slots: Vec<u32>,
        len: u64,
    },
    Sparse(HashMap<i64, u32, RandomState>),
}

const NONE: u32 = u32::MAX;

impl Default for IntMap {
    fn default() -> Self {
        IntMap::Dense { lo: 0, slots: Vec::new(), len: 0 }
    }
}

impl KeyMap {
    /// Notes that `key` is on row `position`, unless it was seen before.
    pub(super) fn insert(&mut self, key: Key<'_>, position: u32) {
        debug_assert!(position != NONE);
        match key {
            Key::Null => {}
            Key::Text(text) => {
                if !self.text.contains_key(text) {
                    self.text.insert(text.into(), position);
                }
            }
            Key::Int(k) => self.ints.insert(k, position),
        }
    }

    /// The row `key` is on.
    pub(super) fn get(&self, key: Key<'_>) -> Option<u32> {
        match key {
            Key::Null => None,
            Key::Text(text) => self.text.get(text).copied(),
            Key::Int(k) => match &self.ints {
                IntMap::Dense { lo, slots, .. } => {
                    let offset = usize::try_from(k.checked_sub(*lo)?).ok()?;
                    slots.get(offset).copied().filter(|p| *p != NONE)
                }
                IntMap::Sparse(map) => map.get(&k).copied(),
            },
        }
    }
}

impl IntMap {
    fn insert(&mut self, k: i64, position: u32) {
        if let IntMap::Dense { lo, slots, len } = self {
            if slots.is_empty() {
                *lo = k;
            }
            match fit(*lo, slots.len() as u64, k, 1, (*len + 1).saturating_mul(MAP_SLOTS_PER_KEY)) {
                Fit::Inside(offset) => {
                    let slot = &mut slots[offset as usize];
                    if *slot == NONE {
                        *slot = position;
                        *len += 1;
                    }
                    return;
                }
                Fit::Grow { lo: new_lo, span } => {
                    let shift = (*lo - new_lo) as usize;
                    let mut grown = vec![NONE; span as usize];
                    grown[shift..shift + slots.len()].copy_from_slice(slots);
                    (*lo, *slots) = (new_lo, grown);
                    return self.insert(k, position);
                }
                Fit::TooSparse => {
                    let mut map = HashMap::with_capacity_and_hasher(*len as usize + 1, RandomState::default());
                    for (offset, slot) in slots.iter().enumerate() {
                        if *slot != NONE {
                            map.insert(*lo + offset as i64, *slot);
                        }
                    }
                    *self = IntMap::Sparse(map);
                }
            }
        }
        if let IntMap::Sparse(map) = self {
            map.entry(k).or_insert(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut set = KeySet::default();
        let mut plain = std::collections::HashSet::new();
        for k in keys() {
            assert_eq!(set.insert(Key::Int(k)), plain.insert(k), "inserting {k}");
        }
        for k in keys().into_iter().chain([-1, 7, 1_000_002, 42_000_000_000]) {
            assert_eq!(set.contains(Key::Int(k)), plain.contains(&k), "looking up {k}");
        }
        assert!(matches!(set.ints, IntSet::Sparse(_)), "the far keys made it sparse");
        assert!(set.insert(Key::Null) && !set.insert(Key::Null) && !set.contains(Key::Null));
        assert!(set.insert(Key::Text("a")) && !set.insert(Key::Text("a")) && set.contains(Key::Text("a")));
        assert!(!set.contains(Key::Text("b")));
    }

    #[test]
    fn dense_keys_stay_a_bitmap() {
        let mut set = KeySet::default();
        for k in (0..1_000_000i64).rev().chain(1_000_000..2_000_000) {
            assert!(set.insert(Key::Int(k + 500)));
        }
        let IntSet::Dense { bits, len, .. } = &set.ints else { panic!("dense keys turned sparse") };
        assert_eq!(*len, 2_000_000);
        assert!(bits.len() * 64 <= 4 * 2_000_000 + 128, "{} words", bits.len());
        assert!(set.contains(Key::Int(500)) && set.contains(Key::Int(2_000_499)) && !set.contains(Key::Int(499)));
    }

    #[test]
    fn a_key_map_keeps_each_keys_first_position() {
        let mut map = KeyMap::default();
        let mut plain = std::collections::HashMap::new();
        for (position, k) in keys().into_iter().enumerate() {
            map.insert(Key::Int(k), position as u32);
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
        let mut dense = KeyMap::default();
        for k in (0..10_000i64).rev() {
            dense.insert(Key::Int(k), k as u32);
        }
        assert!(matches!(dense.ints, IntMap::Dense { .. }));
        assert_eq!(dense.get(Key::Int(1234)), Some(1234));
    }

    #[test]
    fn key_columns_read_every_kind() {
        let ints: ArrayRef = std::sync::Arc::new(arrow_array::Int32Array::from(vec![Some(3), None]));
        let column = KeyColumn::new(&ints).unwrap();
        assert_eq!((column.get(0), column.get(1)), (Key::Int(3), Key::Null));
        let dates: ArrayRef = std::sync::Arc::new(arrow_array::Date32Array::from(vec![19_000]));
        assert_eq!(KeyColumn::new(&dates).unwrap().get(0), Key::Int(19_000));
        let text: ArrayRef = std::sync::Arc::new(LargeStringArray::from(vec![Some("a"), None]));
        let column = KeyColumn::new(&text).unwrap();
        assert_eq!((column.get(0), column.get(1)), (Key::Text("a"), Key::Null));
        let floats: ArrayRef = std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.0]));
        assert!(KeyColumn::new(&floats).err().unwrap().contains("Float64"));
    }
}
