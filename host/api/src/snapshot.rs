//! The Gold tables the server answers from: read whole from the Gold store
//! into typed column files in the server's scratch folder, mapped into
//! memory, and read again when a later run publishes.
//!
//! Why a copy of its own: held as columns, a page at any depth is a slice
//! of a sorted index (no `OFFSET` walk, no `COUNT(*)`), an ordering is
//! sorted once per published run, and a reader never waits on the store.
//! Why mapped files: the server's memory stays the same whatever Gold's
//! size (the kernel keeps the pages that are read), and a reload writes the
//! next run's files beside the current ones instead of a second copy in
//! memory. The store stays the source of truth; a new run is picked up
//! within the poll interval.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use medallion_common::scratch::Scratch;
use medallion_lake::Lake;
use medallion_pipeline::GoldSpec;
use medallion_store::{Column, Columns, Mapped, Values};
use medallion_store::{GoldStore, StoreError, Versions};

use crate::quarantine::{self, Sample};

/// Orders kept per table (4 bytes a row each, in a mapped file); past
/// this, all but the default ones are dropped.
const ORDERS_KEPT: usize = 16;

/// Sort columns: (column, descending), the key last.
type Sort = Vec<(usize, bool)>;

/// A row order: row numbers, mapped from a file.
pub type Order = Arc<Mapped<u32>>;

/// A Gold table as the API shows it.
pub struct Table {
    /// Its name (`dm_sales_daily`).
    pub name: String,
    /// The reference API's route (`/gold/sales/daily`), if any.
    pub route: Option<String>,
    /// What it holds.
    pub description: String,
    /// The columns that identify a row; every ordering ends with them.
    pub key: Vec<usize>,
    /// The default sort column of the plain endpoints.
    pub order_by: usize,
    /// The data.
    pub data: Columns,
    /// Where the table's files are (its orders go there too).
    dir: PathBuf,
    /// Row orders computed so far, by sort columns.
    orders: Mutex<HashMap<Sort, Order>>,
}

impl Table {
    /// The rows in the order of `sort` (column, descending), ties broken by
    /// the key ascending; computed once per published run. Sorting needs the
    /// order in memory for a moment; it is then kept in a mapped file.
    pub fn order(&self, sort: &[(usize, bool)]) -> Order {
        let full = self.full_sort(sort);
        if let Some(order) = self.orders.lock().unwrap_or_else(PoisonError::into_inner).get(&full) {
            return order.clone();
        }
        let mut order: Vec<u32> = (0..self.data.rows() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.compare_rows(&full, a as usize, b as usize));
        let order = match self.map_order(&order) {
            Ok(mapped) => Arc::new(mapped),
            Err(e) => {
                // A full disk, say: the order is kept in memory instead.
                tracing::warn!(table = %self.name, "cannot keep a row order in the server's scratch folder: {e}");
                match Mapped::from_slice(&order) {
                    Ok(in_memory) => Arc::new(in_memory),
                    Err(e) => panic!("no memory for a row order of {} rows: {e}", order.len()),
                }
            }
        };
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if orders.len() >= ORDERS_KEPT {
            // Bounded memory: keep the orders every client starts with.
            let defaults = [self.full_sort(&[]), self.full_sort(&[(self.order_by, true)])];
            orders.retain(|sort, _| defaults.contains(sort));
        }
        orders.insert(full, order.clone());
        order
    }

    /// `order` written to a file of its own and mapped; the file is removed
    /// at once (the mapping keeps its pages, until the order is dropped).
    fn map_order(&self, order: &[u32]) -> std::io::Result<Mapped<u32>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.dir.join(format!("order-{}", NEXT.fetch_add(1, Atomic::Relaxed)));
        let mut file = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
        for row in order {
            file.write_all(&row.to_ne_bytes())?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_data().ok();
        let mapped = Mapped::open(&path, order.len());
        std::fs::remove_file(&path).ok();
        mapped
    }

    /// Compares two rows on `sort`.
    pub fn compare_rows(&self, sort: &[(usize, bool)], a: usize, b: usize) -> Ordering {
        for &(column, descending) in sort {
            let ordering = compare_cells(&self.data.columns[column], a, b);
            let ordering = if descending { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }

    /// The sort columns with the key appended, as [`Table::order`] uses them.
    pub fn full_sort(&self, sort: &[(usize, bool)]) -> Vec<(usize, bool)> {
        let mut full: Vec<(usize, bool)> = sort.to_vec();
        for &k in &self.key {
            if !full.iter().any(|(c, _)| *c == k) {
                full.push((k, false));
            }
        }
        full
    }
}

/// Two cells of one column; nulls sort last, as in PostgreSQL.
fn compare_cells(column: &Column, a: usize, b: usize) -> Ordering {
    match (column.is_valid(a), column.is_valid(b)) {
        (true, true) => {}
        (false, false) => return Ordering::Equal,
        (false, true) => return Ordering::Greater,
        (true, false) => return Ordering::Less,
    }
    match &column.values {
        Values::Int(v) => v[a].cmp(&v[b]),
        Values::Double(v) => v[a].total_cmp(&v[b]),
        Values::Date(v) => v[a].cmp(&v[b]),
        Values::Text(v) => v.get(a).cmp(v.get(b)),
        Values::Bool(v) => v[a].cmp(&v[b]),
    }
}

/// Everything the server answers from, for one published run.
pub struct Snapshot {
    /// The run that published these tables (`None`: no Gold yet).
    pub run_id: Option<String>,
    /// The tables, in `pipeline.yaml`'s order.
    pub tables: Arc<Tables>,
    /// The latest runs, newest first.
    pub runs: Vec<serde_json::Value>,
    /// How many runs the log holds, by status.
    pub run_counts: BTreeMap<String, u64>,
    /// A sample of the current Silver's quarantine.
    pub quarantine: Quarantine,
}

/// What the server knows of the lake's quarantine.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    /// The sample of the Silver the lake holds, once read.
    pub sample: Option<Arc<Sample>>,
    /// Why the last read failed (the lake unreachable, say), if it did.
    pub error: Option<String>,
    /// Whether the lake was read (or tried) since the server started.
    pub checked: bool,
}

/// A published run's tables and the folder of their files, removed when
/// the last reader of the run lets go.
pub struct Tables {
    list: Vec<Table>,
    /// Dropped after the tables (field order), so no file goes while mapped.
    _files: Option<Scratch>,
}

impl std::ops::Deref for Tables {
    type Target = [Table];

    fn deref(&self) -> &[Table] {
        &self.list
    }
}

impl Snapshot {
    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The table served at `route`.
    pub fn by_route(&self, route: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.route.as_deref() == Some(route))
    }
}

/// How many runs `/runs` shows.
const RUNS_KEPT: usize = 50;

/// Reads every Gold table of `spec` from `store`, all as one run published
/// them (one read transaction), labelled with that run, into `files` (a
/// folder of its own, removed when the snapshot's last reader drops it).
pub fn load(store: &mut dyn GoldStore, spec: &GoldSpec, files: Scratch) -> Result<Snapshot, StoreError> {
    let runs = store.runs(RUNS_KEPT)?;
    let run_counts = store.run_counts()?;
    let names: Vec<&str> = spec.tables.keys().map(String::as_str).collect();
    let published = store.read_published(&names, files.path())?;
    let mut tables = Vec::new();
    for (((name, table_spec), data), i) in spec.tables.iter().zip(published.tables).zip(0..) {
        let Some(data) = data else {
            tracing::warn!(table = %name, "not in the Gold store yet: run `host run pipeline.yaml` first");
            continue;
        };
        let position = |column: &str| data.position(column);
        let key: Vec<usize> = table_spec.key.iter().filter_map(|k| position(k)).collect();
        if key.is_empty() || key.len() != table_spec.key.len() {
            // Without a key, pages could not be told apart on ties.
            tracing::warn!(
                table = %name,
                "not served: gold.tables.{name}.key must name the columns that identify a row"
            );
            continue;
        }
        let order_by = table_spec.order_by.as_deref().and_then(position).or_else(|| key.first().copied()).unwrap_or(0);
        let table = Table {
            name: name.clone(),
            route: table_spec.route.clone(),
            description: table_spec.description.clone().unwrap_or_default(),
            key,
            order_by,
            data,
            dir: files.path().join(i.to_string()),
            orders: Mutex::new(HashMap::new()),
        };
        // The orders every client starts with: the default one, both ways.
        table.order(&[(table.order_by, true)]);
        table.order(&[]);
        tables.push(table);
    }
    Ok(Snapshot {
        run_id: published.run_id,
        tables: Arc::new(Tables { list: tables, _files: Some(files) }),
        runs,
        run_counts,
        quarantine: Quarantine::default(),
    })
}

/// The current snapshot, replaced whole when a new run publishes.
pub type Shared = Arc<RwLock<Arc<Snapshot>>>;

/// Loads the first snapshot, then polls the store every `every` in a thread
/// of its own (the stores are blocking) and swaps in a new snapshot when the
/// run log changed. A store that stops answering keeps the last snapshot.
/// With a `lake` URL, the same thread reads a sample of the quarantine of
/// each new Silver run (the first one right away). Each snapshot's files go
/// to a folder of their own in `scratch`.
pub fn watch(
    url: &str,
    spec: GoldSpec,
    lake: Option<String>,
    scratch: Arc<Scratch>,
    every: Duration,
) -> Result<Shared, StoreError> {
    let mut store = medallion_store::open(url)?;
    let mut seen = store.versions()?;
    let files = snapshot_folder(&scratch, store.as_ref())?;
    let first = load(store.as_mut(), &spec, files)?;
    // What was read, which may be newer than what was polled.
    seen.published = first.run_id.clone();
    tracing::info!(run = first.run_id.as_deref().unwrap_or("none"), tables = first.tables.len(), "gold loaded");
    let shared: Shared = Arc::new(RwLock::new(Arc::new(first)));
    let writer = shared.clone();
    std::thread::Builder::new()
        .name("gold-watch".to_owned())
        .spawn(move || {
            let mut lake = LakeSampler::new(lake);
            lake.refresh(&writer);
            loop {
                std::thread::sleep(every);
                let versions = match store.versions() {
                    Ok(versions) => versions,
                    Err(e) => {
                        tracing::warn!("cannot poll the Gold store, serving the last snapshot: {e}");
                        continue;
                    }
                };
                if versions == seen {
                    if lake.retry_due() {
                        lake.refresh(&writer);
                    }
                    continue;
                }
                let reloaded = if versions.published == seen.published {
                    // Only the run log moved (a run started, ended or failed).
                    store.runs(RUNS_KEPT).and_then(|runs| {
                        let run_counts = store.run_counts()?;
                        let current = writer.read().unwrap_or_else(PoisonError::into_inner).clone();
                        Ok(Snapshot { runs, run_counts, ..current.shallow() })
                    })
                } else {
                    snapshot_folder(&scratch, store.as_ref()).and_then(|files| load(store.as_mut(), &spec, files))
                };
                match reloaded {
                    Ok(snapshot) => {
                        if versions.published != seen.published {
                            tracing::info!(run = snapshot.run_id.as_deref().unwrap_or("none"), "new gold loaded");
                        }
                        seen = Versions { published: snapshot.run_id.clone(), ..versions };
                        swap(&writer, |current| Snapshot { quarantine: current.quarantine.clone(), ..snapshot });
                    }
                    Err(e) => tracing::warn!("cannot reload Gold, serving the last snapshot: {e}"),
                }
                // After Gold, so a new run is served without waiting for the
                // lake: the run may have built a new Silver.
                lake.refresh(&writer);
            }
        })
        .map_err(|e| StoreError {
            store: medallion_store::redact(url),
            message: format!("cannot start the watcher: {e}"),
        })?;
    Ok(shared)
}

/// A new folder in `scratch` for a snapshot's files.
fn snapshot_folder(scratch: &Scratch, store: &dyn GoldStore) -> Result<Scratch, StoreError> {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    scratch.nested(&format!("gold-{}", LOADS.fetch_add(1, Atomic::Relaxed))).map_err(|e| StoreError {
        store: store.describe(),
        message: format!(
            "cannot create a folder in the server's scratch folder {}: {e}; give a writable folder with enough room \
             for Gold as `limits.spill`",
            scratch.path().display()
        ),
    })
}

impl Snapshot {
    /// The same tables, runs and quarantine (shared, not copied).
    fn shallow(&self) -> Snapshot {
        Snapshot {
            run_id: self.run_id.clone(),
            tables: self.tables.clone(),
            runs: self.runs.clone(),
            run_counts: self.run_counts.clone(),
            quarantine: self.quarantine.clone(),
        }
    }
}

/// Replaces the shared snapshot with `change` of it.
fn swap(shared: &Shared, change: impl FnOnce(&Snapshot) -> Snapshot) {
    let current = shared.read().unwrap_or_else(PoisonError::into_inner).clone();
    *shared.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(change(&current));
}

/// How long after a failed read of the lake the sample is tried again.
const LAKE_RETRY: Duration = Duration::from_secs(30);

/// The lake the quarantine sample is read from, opened on first use.
struct LakeSampler {
    url: Option<String>,
    lake: Option<Lake>,
    /// When to try again after a failed read.
    retry_at: Option<std::time::Instant>,
}

impl LakeSampler {
    fn new(url: Option<String>) -> Self {
        LakeSampler { url, lake: None, retry_at: None }
    }

    /// Whether the last read failed and it is time to try again.
    fn retry_due(&self) -> bool {
        self.retry_at.is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// Reads the sample of the Silver the lake holds now (unless it is the
    /// run already sampled) and swaps it into `shared`; on failure keeps
    /// the last sample, with why, and tries again after [`LAKE_RETRY`].
    fn refresh(&mut self, shared: &Shared) {
        let current = shared.read().unwrap_or_else(PoisonError::into_inner).quarantine.clone();
        let quarantine = match self.read(&current) {
            Ok(sample) => {
                self.retry_at = None;
                Quarantine { sample, error: None, checked: true }
            }
            Err(e) => {
                tracing::warn!("cannot read the quarantine sample from the lake: {e}");
                self.retry_at = Some(std::time::Instant::now() + LAKE_RETRY);
                Quarantine { sample: current.sample.clone(), error: Some(e), checked: true }
            }
        };
        swap(shared, |snapshot| Snapshot { quarantine, ..snapshot.shallow() });
    }

    fn read(&mut self, current: &Quarantine) -> Result<Option<Arc<Sample>>, String> {
        let Some(url) = &self.url else { return Err("the server was not given the lake".to_owned()) };
        if self.lake.is_none() {
            // A local lake that does not exist yet holds no Silver (and the
            // server creates no folder).
            let local = url.strip_prefix("file://").unwrap_or(url);
            if (!url.contains("://") || url.starts_with("file://")) && !std::path::Path::new(local).exists() {
                return Ok(None);
            }
            self.lake = Some(Lake::open(url).map_err(|e| e.to_string())?);
        }
        let Some(lake) = &self.lake else { return Ok(None) };
        quarantine::read_if_new(lake, current.sample.as_ref()).map_err(|e| e.to_string())
    }
}
