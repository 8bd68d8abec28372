//! The Gold tables the server answers from: read whole from the Gold store
//! into typed columns, and read again when a later run publishes.
//!
//! Why in memory: Gold is a datamart of a few million rows at most; held as
//! columns, a page at any depth is a slice of a sorted index (no `OFFSET`
//! walk, no `COUNT(*)`), an ordering is sorted once per published run, and a
//! reader never waits on the store. The store stays the source of truth; a
//! new run is picked up within the poll interval.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use medallion_lake::Lake;
use medallion_pipeline::GoldSpec;
use medallion_store::{Column, Columns, Values};
use medallion_store::{GoldStore, StoreError, Versions};

use crate::quarantine::{self, Sample};

/// Orders kept per table (4 bytes a row each); past this, all but the
/// default ones are dropped.
const ORDERS_KEPT: usize = 16;

/// Sort columns: (column, descending), the key last.
type Sort = Vec<(usize, bool)>;

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
    /// Row orders computed so far, by sort columns.
    orders: Mutex<HashMap<Sort, Arc<Vec<u32>>>>,
}

impl Table {
    /// The rows in the order of `sort` (column, descending), ties broken by
    /// the key ascending; computed once per published run.
    pub fn order(&self, sort: &[(usize, bool)]) -> Arc<Vec<u32>> {
        let full = self.full_sort(sort);
        if let Some(order) = self.orders.lock().unwrap_or_else(PoisonError::into_inner).get(&full) {
            return order.clone();
        }
        let mut order: Vec<u32> = (0..self.data.rows() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.compare_rows(&full, a as usize, b as usize));
        let order = Arc::new(order);
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if orders.len() >= ORDERS_KEPT {
            // Bounded memory: keep the orders every client starts with.
            let defaults = [self.full_sort(&[]), self.full_sort(&[(self.order_by, true)])];
            orders.retain(|sort, _| defaults.contains(sort));
        }
        orders.insert(full, order.clone());
        order
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
        Values::Text(v) => v[a].cmp(&v[b]),
        Values::Bool(v) => v[a].cmp(&v[b]),
    }
}

/// Everything the server answers from, for one published run.
pub struct Snapshot {
    /// The run that published these tables (`None`: no Gold yet).
    pub run_id: Option<String>,
    /// The tables, in `pipeline.yaml`'s order.
    pub tables: Arc<Vec<Table>>,
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
/// them (one read transaction), labelled with that run.
pub fn load(store: &mut dyn GoldStore, spec: &GoldSpec) -> Result<Snapshot, StoreError> {
    let runs = store.runs(RUNS_KEPT)?;
    let run_counts = store.run_counts()?;
    let names: Vec<&str> = spec.tables.keys().map(String::as_str).collect();
    let published = store.read_published(&names)?;
    let mut tables = Vec::new();
    for ((name, table_spec), data) in spec.tables.iter().zip(published.tables) {
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
            orders: Mutex::new(HashMap::new()),
        };
        // The orders every client starts with: the default one, both ways.
        table.order(&[(table.order_by, true)]);
        table.order(&[]);
        tables.push(table);
    }
    Ok(Snapshot {
        run_id: published.run_id,
        tables: Arc::new(tables),
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
/// each new Silver run (the first one right away).
pub fn watch(url: &str, spec: GoldSpec, lake: Option<String>, every: Duration) -> Result<Shared, StoreError> {
    let mut store = medallion_store::open(url)?;
    let mut seen = store.versions()?;
    let first = load(store.as_mut(), &spec)?;
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
                    load(store.as_mut(), &spec)
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
