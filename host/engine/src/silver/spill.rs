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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{ArrayRef, make_array};
use arrow_schema::ArrowError;
use memmap2::{MmapMut, MmapRaw};

/// What Silver's keys may hold on the heap, and where the rest goes.
pub(super) struct KeyMemory {
    /// Bytes of keys kept on the heap at most.
    limit: u64,
    held: AtomicU64,
    /// Where the files go; `None`: everything on the heap.
    folder: Option<PathBuf>,
    /// Bytes in mapped files now, and at most.
    mapped: AtomicU64,
    most_mapped: AtomicU64,
    files: AtomicU64,
    /// The file taken columns are being copied into.
    segment: Mutex<Option<Arc<Segment>>>,
    /// Whether the folder refused a file (then keys stay on the heap).
    refused: AtomicBool,
}

/// Bytes of a file taken columns are copied into (more when one column
/// needs more): one mapping for many batches, so that a long table does
/// not map thousands of files.
const SEGMENT: usize = 64 << 20;

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
        KeyMemory {
            limit,
            held: AtomicU64::new(0),
            folder: None,
            mapped: AtomicU64::new(0),
            most_mapped: AtomicU64::new(0),
            files: AtomicU64::new(0),
            segment: Mutex::new(None),
            refused: AtomicBool::new(false),
        }
    }

    /// The most bytes of keys in mapped files at once, so far.
    pub(super) fn most_mapped(&self) -> u64 {
        self.most_mapped.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of the heap's share; false when they do not fit (and
    /// there is a folder to spill to that has not refused a file).
    fn reserve(&self, bytes: u64) -> bool {
        if self.folder.is_none() || self.refused.load(Ordering::Relaxed) {
            self.hold(bytes);
            return true;
        }
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Counts `bytes` kept on the heap whatever the share (nowhere else to
    /// put them).
    fn hold(&self, bytes: u64) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn add_mapped(&self, bytes: u64) {
        let now = self.mapped.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.most_mapped.fetch_max(now, Ordering::Relaxed);
    }

    /// A new file of `bytes` zero bytes, its disk space allocated (so that a
    /// full disk is an error here, not a signal when a page is written
    /// later), unlinked once open. `None`, with a warning the first time,
    /// when the folder refuses: the keys then stay on the heap, past the
    /// budget, rather than fail the run.
    fn file(&self, bytes: usize) -> Option<std::fs::File> {
        let folder = self.folder.as_ref()?;
        let path = folder.join(format!("keys-{}", self.files.fetch_add(1, Ordering::Relaxed)));
        let made = std::fs::create_dir_all(folder).and_then(|()| {
            let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            // Unlinked at once: the mapping keeps its pages, and a killed run
            // leaves nothing behind (the scratch folder's removal covers
            // systems where an open file cannot be removed).
            std::fs::remove_file(&path).ok();
            allocate(&file, bytes as u64)?;
            Ok(file)
        });
        match made {
            Ok(file) => Some(file),
            Err(e) => {
                std::fs::remove_file(&path).ok();
                self.refuse(&format!("the scratch folder refused a file ({}: {e})", path.display()));
                None
            }
        }
    }

    /// A file of `bytes` zero bytes, mapped; `None` as [`KeyMemory::file`].
    fn map(&self, bytes: usize) -> Option<MmapMut> {
        let file = self.file(bytes)?;
        // SAFETY: the file is this process's own, created just now in the
        // run's scratch folder (mode 0700) and unlinked: nothing else maps
        // or writes it.
        match unsafe { MmapMut::map_mut(&file) } {
            Ok(map) => {
                self.add_mapped(bytes as u64);
                Some(map)
            }
            Err(e) => {
                self.refuse(&format!("the scratch folder's files cannot be mapped ({e})"));
                None
            }
        }
    }

    /// From now on keys stay on the heap; says why, once.
    fn refuse(&self, why: &str) {
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Silver's keys past their share of limits.memory stay in memory: {why}\n  hint: give limits.spill a folder on a local disk with room"
            );
        }
    }

    /// `array` as a parent index keeps it: as it is while the heap's share
    /// has room (its bytes then count in `held`, to be given back with
    /// [`KeyMemory::release`]), else copied into a mapped file.
    pub(super) fn keep(self: &Arc<Self>, array: &ArrayRef, held: &mut u64) -> Result<ArrayRef, String> {
        let bytes = array.get_array_memory_size() as u64;
        if !self.reserve(bytes) {
            match self.map_array(array) {
                Ok(Some(mapped)) => return Ok(mapped),
                Ok(None) => self.hold(bytes),
                Err(e) => return Err(format!("could not copy keys to the scratch folder: {e}")),
            };
        }
        *held += bytes;
        Ok(array.clone())
    }

    /// A copy of `array` whose buffers are in a mapped file (`None` when the
    /// folder refuses one).
    fn map_array(self: &Arc<Self>, array: &ArrayRef) -> Result<Option<ArrayRef>, ArrowError> {
        let data = array.to_data();
        let mut places = Vec::new();
        let mut end = 0;
        plan(&data, &mut places, &mut end);
        let Some((segment, start)) = self.room(end.max(1)) else { return Ok(None) };
        let mut next = places.iter();
        copy(&data, &segment, start, &mut next);
        let mut next = places.iter();
        let data = rebuild(&data, &segment, start, &mut next)?;
        Ok(Some(make_array(data)))
    }

    /// `bytes` of room in the current segment (or a new one), at a multiple
    /// of [`ALIGN`]: the segment and where the room starts.
    fn room(self: &Arc<Self>, bytes: usize) -> Option<(Arc<Segment>, usize)> {
        let mut current = self.segment.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(segment) = current.as_ref() {
            let start = segment.used.load(Ordering::Relaxed);
            if start + bytes <= segment.map.len() {
                segment.used.store((start + bytes).next_multiple_of(ALIGN), Ordering::Relaxed);
                return Some((segment.clone(), start));
            }
        }
        let size = bytes.max(SEGMENT);
        let file = self.file(size)?;
        let map = match MmapRaw::map_raw(&file) {
            Ok(map) => map,
            Err(e) => {
                self.refuse(&format!("the scratch folder's files cannot be mapped ({e})"));
                return None;
            }
        };
        self.add_mapped(size as u64);
        let segment =
            Arc::new(Segment { map, used: AtomicUsize::new(bytes.next_multiple_of(ALIGN)), memory: self.clone() });
        *current = Some(segment.clone());
        Some((segment, 0))
    }
}

/// Allocates `bytes` of disk for `file` (a sparse file would fail only
/// when a page is written, with a signal).
fn allocate(file: &std::fs::File, bytes: u64) -> io::Result<()> {
    file.set_len(bytes)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let length = libc::off_t::try_from(bytes).map_err(io::Error::other)?;
        // SAFETY: a valid, open descriptor; the call writes nothing we own.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
    }
    Ok(())
}

/// A mapped file that taken columns are copied into, one after another;
/// the Arrow buffers over it keep it mapped.
struct Segment {
    map: MmapRaw,
    /// Bytes handed out (a multiple of [`ALIGN`]; changed only under
    /// [`KeyMemory::segment`]'s lock).
    used: AtomicUsize,
    memory: Arc<KeyMemory>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.memory.mapped.fetch_sub(self.map.len() as u64, Ordering::Relaxed);
    }
}

/// Buffers start at multiples of this in a file (Arrow's alignment).
const ALIGN: usize = 64;

/// Every buffer of `data` (its validity first, then its buffers, then its
/// children's, depth first), each given a place `(offset, len)` from 0,
/// ending at `end`.
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

/// Copies `data`'s buffers to their places after `start` in `segment`, in
/// [`plan`]'s order.
fn copy<'a>(
    data: &arrow_data::ArrayData,
    segment: &Segment,
    start: usize,
    places: &mut impl Iterator<Item = &'a (usize, usize)>,
) {
    let mut put = |bytes: &[u8]| {
        let (at, len) = *places.next().expect("a place for every buffer");
        assert!(start + at + len <= segment.map.len() && bytes.len() == len);
        // SAFETY: in bounds (checked), and this room was handed out to this
        // copy alone: nothing else reads or writes it yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), segment.map.as_mut_ptr().add(start + at), len) };
    };
    if let Some(nulls) = data.nulls() {
        put(nulls.buffer().as_slice());
    }
    for buffer in data.buffers() {
        put(buffer.as_slice());
    }
    for child in data.child_data() {
        copy(child, segment, start, places);
    }
}

/// `data` over the copies of its buffers in `segment`, in [`plan`]'s order.
fn rebuild<'a>(
    data: &arrow_data::ArrayData,
    segment: &Arc<Segment>,
    start: usize,
    places: &mut impl Iterator<Item = &'a (usize, usize)>,
) -> Result<arrow_data::ArrayData, ArrowError> {
    let mut mapped = || {
        let (at, len) = *places.next().expect("a place for every buffer");
        // SAFETY: `start + at .. + len` is inside the mapping (placed by
        // `plan` in room `room` handed out), written once before this, and
        // never written again; the buffer keeps the segment mapped.
        unsafe {
            let pointer = NonNull::new_unchecked(segment.map.as_mut_ptr().add(start + at));
            arrow_buffer::Buffer::from_custom_allocation(pointer, len, segment.clone())
        }
    };
    let nulls = data.nulls().map(|nulls| {
        arrow_buffer::NullBuffer::new(arrow_buffer::BooleanBuffer::new(mapped(), nulls.offset(), nulls.len()))
    });
    let buffers: Vec<_> = data.buffers().iter().map(|_| mapped()).collect();
    let children =
        data.child_data().iter().map(|child| rebuild(child, segment, start, places)).collect::<Result<Vec<_>, _>>()?;
    data.clone().into_builder().nulls(nulls).buffers(buffers).child_data(children).build()
}

/// A fixed number of plain values (bits of a bitmap, positions) on the heap
/// or, past the keys' share of the budget, in a mapped file. Starts zeroed.
pub(super) struct Slab<T: bytemuck::Pod> {
    store: Store<T>,
}

enum Store<T> {
    Heap { items: Vec<T>, memory: Option<Arc<KeyMemory>> },
    Mapped { map: MmapMut, len: usize, memory: Arc<KeyMemory> },
}

impl<T: bytemuck::Pod> Default for Slab<T> {
    fn default() -> Self {
        Slab { store: Store::Heap { items: Vec::new(), memory: None } }
    }
}

impl<T: bytemuck::Pod> Slab<T> {
    /// `len` zeroes, where `memory` has room for them (on the heap past
    /// the budget when the scratch folder refuses a file).
    pub(super) fn zeroed(memory: &Arc<KeyMemory>, len: usize) -> Slab<T> {
        let bytes = len * size_of::<T>();
        let reserved = bytes == 0 || memory.reserve(bytes as u64);
        let mapped = if reserved { None } else { memory.map(bytes) };
        let store = match mapped {
            // A new file reads as zeroes.
            Some(map) => Store::Mapped { map, len, memory: memory.clone() },
            None => {
                if !reserved {
                    // Past the share: counted all the same, given back on drop.
                    memory.hold(bytes as u64);
                }
                Store::Heap { items: vec![T::zeroed(); len], memory: Some(memory.clone()) }
            }
        };
        Slab { store }
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
            Store::Mapped { map, len, .. } => bytemuck::cast_slice(&map[..len * size_of::<T>()]),
        }
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for Slab<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.store {
            Store::Heap { items, .. } => items,
            Store::Mapped { map, len, .. } => bytemuck::cast_slice_mut(&mut map[..*len * size_of::<T>()]),
        }
    }
}

impl<T: bytemuck::Pod> Drop for Slab<T> {
    fn drop(&mut self) {
        match &self.store {
            Store::Heap { items, memory: Some(memory) } => memory.release((items.len() * size_of::<T>()) as u64),
            Store::Mapped { map, memory, .. } => {
                memory.mapped.fetch_sub(map.len() as u64, Ordering::Relaxed);
            }
            Store::Heap { memory: None, .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Date32Array, DictionaryArray, StringArray, StringViewArray};

    #[test]
    fn a_slab_past_the_share_is_a_file_and_reads_as_the_heap_would() {
        let dir = tempfile::tempdir().unwrap();
        let memory = KeyMemory::new(1 << 10, dir.path().join("keys"));
        let mut small: Slab<u32> = Slab::zeroed(&memory, 100);
        assert!(matches!(small.store, Store::Heap { .. }));
        let mut big: Slab<u32> = Slab::zeroed(&memory, 10_000);
        assert!(matches!(big.store, Store::Mapped { .. }));
        assert_eq!(memory.mapped.load(Ordering::Relaxed), 40_000);
        assert!(big.iter().all(|v| *v == 0));
        big[9_999] = 7;
        small[3] = 5;
        assert_eq!((big[9_999], small[3], big.len()), (7, 5, 10_000));
        // The file is gone from the folder while mapped.
        assert_eq!(std::fs::read_dir(dir.path().join("keys")).unwrap().count(), 0);
        drop((small, big));
        assert_eq!(memory.held.load(Ordering::Relaxed), 0);
        assert_eq!((memory.mapped.load(Ordering::Relaxed), memory.most_mapped()), (0, 40_000));
    }

    #[test]
    fn spilled_columns_equal_the_originals_and_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let memory = KeyMemory::new(0, dir.path().to_path_buf());
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(1), None, Some(19_000), Some(-3)]));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("été"), Some("")]));
        let views: ArrayRef =
            Arc::new(StringViewArray::from(vec![Some("short"), Some("a string longer than twelve bytes"), None]));
        let dictionary: ArrayRef = Arc::new(DictionaryArray::<arrow_array::types::Int32Type>::from_iter([
            Some("x"),
            None,
            Some("y"),
            Some("x"),
        ]));
        let mut held = 0;
        for array in [dates, text, views, dictionary] {
            let sliced = array.slice(1, array.len() - 1);
            for array in [array, sliced] {
                let kept = memory.keep(&array, &mut held).unwrap();
                assert_eq!(kept.to_data(), array.to_data());
                assert_ne!(kept.to_data().buffers()[0].as_ptr(), array.to_data().buffers()[0].as_ptr());
            }
        }
        assert_eq!(held, 0);
        assert_eq!(memory.files.load(Ordering::Relaxed), 1, "eight columns, one segment");
        assert_eq!(memory.most_mapped(), SEGMENT as u64);
    }

    #[test]
    fn a_folder_that_refuses_files_leaves_the_keys_on_the_heap() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: nothing can be created in it.
        let blocked = dir.path().join("not-a-folder");
        std::fs::write(&blocked, b"").unwrap();
        let memory = KeyMemory::new(0, blocked.join("keys"));
        let mut slab: Slab<u64> = Slab::zeroed(&memory, 1_000);
        assert!(matches!(slab.store, Store::Heap { .. }));
        slab[999] = 1;
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![1, 2, 3]));
        let mut held = 0;
        let kept = memory.keep(&dates, &mut held).unwrap();
        assert_eq!(kept.to_data().buffers()[0].as_ptr(), dates.to_data().buffers()[0].as_ptr());
        assert!(held > 0 && memory.refused.load(Ordering::Relaxed));
        drop(slab);
        memory.release(held);
        assert_eq!(memory.held.load(Ordering::Relaxed), 0);
    }
}
