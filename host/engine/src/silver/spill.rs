//! Silver's keys past their share of the memory budget: the bitmaps and
//! position arrays of the keys ([`Slab`]) and the columns children take from
//! their parents ([`KeyMemory::keep`]) go to files in the run's scratch
//! folder, mapped into memory, once the keys on the heap hold their share.
//! The kernel writes a mapped file's pages out and drops them when memory is
//! short and reads them back when they are touched again, so these pages
//! never need room that the budget does not have; while memory is plentiful
//! they stay resident and cost nothing more than the heap would.
//!
//! A file is unlinked as soon as it is mapped: nothing is left behind by a
//! run that is killed, and the space goes back when the mapping drops.
//!
//! Not for: keys in hash tables (text keys, and integer keys too sparse for
//! a bitmap), which stay on the heap.

use std::io;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, make_array};
use arrow_schema::ArrowError;
use memmap2::{Mmap, MmapMut};

/// What Silver's keys may hold on the heap, and where the rest goes.
#[derive(Debug)]
pub(super) struct KeyMemory {
    /// Bytes of keys kept on the heap at most.
    limit: u64,
    held: AtomicU64,
    /// Where the files go; `None`: everything on the heap.
    folder: Option<PathBuf>,
    /// Bytes in files so far.
    mapped: AtomicU64,
    files: AtomicU64,
}

impl KeyMemory {
    /// Keys on the heap up to `limit` bytes, the rest in files in `folder`
    /// (created when the first one is).
    pub(super) fn new(limit: u64, folder: PathBuf) -> Arc<KeyMemory> {
        Arc::new(KeyMemory { folder: Some(folder), ..Self::base(limit) })
    }

    /// Everything on the heap (checking a pipeline, tests).
    pub(super) fn unbounded() -> Arc<KeyMemory> {
        Arc::new(Self::base(u64::MAX))
    }

    fn base(limit: u64) -> KeyMemory {
        KeyMemory { limit, held: AtomicU64::new(0), folder: None, mapped: AtomicU64::new(0), files: AtomicU64::new(0) }
    }

    /// Bytes of keys written to files so far.
    pub(super) fn mapped(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of the heap's share; false when they do not fit (and
    /// there is a folder to spill to).
    fn reserve(&self, bytes: u64) -> bool {
        if self.folder.is_none() {
            self.held.fetch_add(bytes, Ordering::Relaxed);
            return true;
        }
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub(super) fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A file of `bytes` zero bytes, mapped (and already unlinked).
    fn map(&self, bytes: usize) -> io::Result<MmapMut> {
        let folder = self.folder.as_ref().ok_or_else(|| io::Error::other("no folder to spill keys to"))?;
        std::fs::create_dir_all(folder)?;
        let path = folder.join(format!("keys-{}", self.files.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let result = file.set_len(bytes as u64).and_then(|()| {
            // SAFETY: the file is this process's own, created just now in the
            // run's scratch folder (mode 0700) and unlinked below: nothing
            // else writes it while it is mapped.
            unsafe { MmapMut::map_mut(&file) }
        });
        // Unlinked at once: the mapping keeps its pages, and a killed run
        // leaves nothing behind (the scratch folder's removal covers systems
        // where a mapped file cannot be removed).
        std::fs::remove_file(&path).ok();
        let map = result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.mapped.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(map)
    }

    /// `array` as a parent index keeps it: as it is while the heap's share
    /// has room (its bytes then count in `held`, to be given back with
    /// [`KeyMemory::release`]), else copied into a mapped file.
    pub(super) fn keep(&self, array: &ArrayRef, held: &mut u64) -> Result<ArrayRef, String> {
        let bytes = array.get_array_memory_size() as u64;
        if self.reserve(bytes) {
            *held += bytes;
            return Ok(array.clone());
        }
        self.map_array(array).map_err(|e| format!("could not spill keys to the scratch folder: {e}"))
    }

    /// A copy of `array` whose buffers are in a mapped file.
    fn map_array(&self, array: &ArrayRef) -> io::Result<ArrayRef> {
        let data = array.to_data();
        let mut places = Vec::new();
        let mut end = 0;
        plan(&data, &mut places, &mut end);
        let mut map = self.map(end.max(1))?;
        let mut next = places.iter();
        copy(&data, &mut map, &mut next);
        let map = Arc::new(map.make_read_only()?);
        let mut next = places.iter();
        let data = rebuild(&data, &map, &mut next).map_err(io::Error::other)?;
        Ok(make_array(data))
    }
}

/// Buffers start at multiples of this in a file (Arrow's alignment).
const ALIGN: usize = 64;

/// Every buffer of `data` (its validity first, then its buffers, then its
/// children's, depth first), each given a place `(offset, len)` in a file
/// that ends at `end`.
fn plan(data: &arrow_data::ArrayData, places: &mut Vec<(usize, usize)>, end: &mut usize) {
    let mut place = |len: usize| {
        places.push((*end, len));
        *end = (*end + len).next_multiple_of(ALIGN);
    };
    if let Some(nulls) = data.nulls() {
        place(nulls.buffer().len());
    }
    for buffer in data.buffers() {
        place(buffer.len());
    }
    for child in data.child_data() {
        plan(child, places, end);
    }
}

/// Copies `data`'s buffers to their places, in [`plan`]'s order.
fn copy<'a>(data: &arrow_data::ArrayData, map: &mut MmapMut, places: &mut impl Iterator<Item = &'a (usize, usize)>) {
    let mut put = |bytes: &[u8]| {
        let (at, len) = *places.next().expect("a place for every buffer");
        map[at..at + len].copy_from_slice(bytes);
    };
    if let Some(nulls) = data.nulls() {
        put(nulls.buffer().as_slice());
    }
    for buffer in data.buffers() {
        put(buffer.as_slice());
    }
    for child in data.child_data() {
        copy(child, map, places);
    }
}

/// `data` over the copies of its buffers in `map`, in [`plan`]'s order.
fn rebuild<'a>(
    data: &arrow_data::ArrayData,
    map: &Arc<Mmap>,
    places: &mut impl Iterator<Item = &'a (usize, usize)>,
) -> Result<arrow_data::ArrayData, ArrowError> {
    let mut mapped = || {
        let (at, len) = *places.next().expect("a place for every buffer");
        // SAFETY: `at..at + len` is inside the mapping (placed by `plan`,
        // which sized it), and the buffer keeps the mapping alive.
        unsafe {
            let start = NonNull::new_unchecked(map.as_ptr().add(at).cast_mut());
            arrow_buffer::Buffer::from_custom_allocation(start, len, map.clone())
        }
    };
    let nulls = data.nulls().map(|nulls| {
        arrow_buffer::NullBuffer::new(arrow_buffer::BooleanBuffer::new(mapped(), nulls.offset(), nulls.len()))
    });
    let buffers: Vec<_> = data.buffers().iter().map(|_| mapped()).collect();
    let children = data.child_data().iter().map(|child| rebuild(child, map, places)).collect::<Result<Vec<_>, _>>()?;
    data.clone().into_builder().nulls(nulls).buffers(buffers).child_data(children).build()
}

/// A fixed number of plain values (bits of a bitmap, positions) on the heap
/// or, past the keys' share of the budget, in a mapped file. Starts zeroed.
pub(super) struct Slab<T: bytemuck::Pod> {
    store: Store<T>,
}

enum Store<T> {
    Heap { items: Vec<T>, memory: Option<Arc<KeyMemory>> },
    Mapped { map: MmapMut, len: usize },
}

impl<T: bytemuck::Pod> Default for Slab<T> {
    fn default() -> Self {
        Slab { store: Store::Heap { items: Vec::new(), memory: None } }
    }
}

impl<T: bytemuck::Pod> Slab<T> {
    /// `len` zeroes, where `memory` has room for them.
    pub(super) fn zeroed(memory: &Arc<KeyMemory>, len: usize) -> io::Result<Slab<T>> {
        let bytes = len * size_of::<T>();
        let store = if bytes == 0 || memory.reserve(bytes as u64) {
            Store::Heap { items: vec![T::zeroed(); len], memory: Some(memory.clone()) }
        } else {
            // A new file reads as zeroes, and only the pages written take
            // room.
            Store::Mapped { map: memory.map(bytes)?, len }
        };
        Ok(Slab { store })
    }

    pub(super) fn len(&self) -> usize {
        match &self.store {
            Store::Heap { items, .. } => items.len(),
            Store::Mapped { len, .. } => *len,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for Slab<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.store {
            Store::Heap { items, .. } => items,
            Store::Mapped { map, len } => bytemuck::cast_slice(&map[..len * size_of::<T>()]),
        }
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for Slab<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.store {
            Store::Heap { items, .. } => items,
            Store::Mapped { map, len } => bytemuck::cast_slice_mut(&mut map[..*len * size_of::<T>()]),
        }
    }
}

impl<T: bytemuck::Pod> Drop for Slab<T> {
    fn drop(&mut self) {
        if let Store::Heap { items, memory: Some(memory) } = &self.store {
            memory.release((items.len() * size_of::<T>()) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Date32Array, StringArray, StringViewArray};

    #[test]
    fn a_slab_past_the_share_is_a_file_and_reads_as_the_heap_would() {
        let dir = tempfile::tempdir().unwrap();
        let memory = KeyMemory::new(1 << 10, dir.path().join("keys"));
        let mut small: Slab<u32> = Slab::zeroed(&memory, 100).unwrap();
        assert!(matches!(small.store, Store::Heap { .. }));
        let mut big: Slab<u32> = Slab::zeroed(&memory, 10_000).unwrap();
        assert!(matches!(big.store, Store::Mapped { .. }));
        assert_eq!(memory.mapped(), 40_000);
        assert!(big.iter().all(|v| *v == 0));
        big[9_999] = 7;
        small[3] = 5;
        assert_eq!((big[9_999], small[3], big.len()), (7, 5, 10_000));
        // The file is gone from the folder while mapped.
        assert_eq!(std::fs::read_dir(dir.path().join("keys")).unwrap().count(), 0);
        drop(small);
        assert_eq!(memory.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_spilled_column_equals_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let memory = KeyMemory::new(0, dir.path().to_path_buf());
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(1), None, Some(19_000), Some(-3)]));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("été"), Some("")]));
        let views: ArrayRef =
            Arc::new(StringViewArray::from(vec![Some("short"), Some("a string longer than twelve bytes"), None]));
        for array in [dates, text, views] {
            let mut held = 0;
            let sliced = array.slice(1, array.len() - 1);
            for array in [array, sliced] {
                let kept = memory.keep(&array, &mut held).unwrap();
                assert_eq!(kept.to_data(), array.to_data());
                assert_ne!(kept.to_data().buffers()[0].as_ptr(), array.to_data().buffers()[0].as_ptr());
            }
            assert_eq!(held, 0);
        }
        assert!(memory.mapped() > 0);
    }
}
