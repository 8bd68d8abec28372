//! `pipeline.yaml`: the typed model, loading (environment variables,
//! `--set` overrides) and the checks that point at file, line and column.
//!
//! Loading is in two steps, as ripgrep does with its flags: the text is
//! parsed into a [`Spec`] (serde, unknown keys refused, no I/O), then
//! [`Spec::plan`] resolves paths and checks that the files exist, giving the
//! [`Plan`] that the run uses.
//!
//! Not for: running anything.

pub mod dialect;
mod interpolate;
mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use interpolate::{Unset, interpolate};
pub use stages::{GoldSpec, GoldTableSpec, ParentSpec, PluginStep, SilverSpec, SilverTableSpec, sql_words};

use medallion_lake::SourceSpec;
use medallion_lake::delta::check_table_name;
use medallion_lake::sources::OnBadRecord;
use medallion_plugin::Limits;

/// The pipeline file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The lake: a local path, `file:///path` or `hdfs://namenode:port/path`.
    pub lake: String,
    /// Where the plugins are and what each instance may use.
    #[serde(default)]
    pub plugins: PluginsSpec,
    /// What a run may use of the machine.
    #[serde(default)]
    pub limits: RunLimitsSpec,
    /// How much of the lake's history is kept.
    #[serde(default)]
    pub history: HistorySpec,
    /// The sources landed in Bronze.
    pub sources: SourcesSpec,
    /// The Silver tables built from Bronze.
    #[serde(default)]
    pub silver: SilverSpec,
    /// The Gold datamart.
    #[serde(default)]
    pub gold: GoldSpec,
    /// `host serve`.
    #[serde(default)]
    pub server: ServerSpec,
}

/// `server:`, for `host serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The secret that signs tokens (32 bytes or more; from the environment).
    pub jwt_secret: Option<String>,
    /// Token lifetime, minutes.
    #[serde(default = "default_token_minutes")]
    pub token_minutes: u64,
    /// Users: name → argon2 hash of the password (`host hash-password`);
    /// a user without a hash (an unset variable) cannot log in.
    #[serde(default)]
    pub users: BTreeMap<String, Option<String>>,
    /// Wrong passwords one address may send before it has to wait between
    /// tries (the wait then doubles with each failure, up to 5 minutes).
    #[serde(default = "default_failed_logins")]
    pub failed_logins_before_wait: u32,
    /// Filtered or sorted requests worked on at once (default: the cores
    /// less one, at least one); more wait a second, then get a 503.
    #[serde(default)]
    pub expensive_requests_at_once: Option<usize>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            listen: default_listen(),
            jwt_secret: None,
            token_minutes: default_token_minutes(),
            users: BTreeMap::new(),
            failed_logins_before_wait: default_failed_logins(),
            expensive_requests_at_once: None,
        }
    }
}

fn default_failed_logins() -> u32 {
    5
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_token_minutes() -> u64 {
    60
}

/// The `plugins:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSpec {
    /// The plugins folder.
    #[serde(default = "default_plugins_dir")]
    pub dir: PathBuf,
    /// Per-instance limits.
    #[serde(default)]
    pub limits: LimitsSpec,
}

impl Default for PluginsSpec {
    fn default() -> Self {
        PluginsSpec { dir: default_plugins_dir(), limits: LimitsSpec::default() }
    }
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("dist/plugins")
}

/// `plugins.limits`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory cap per instance, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Time budget per call, milliseconds.
    #[serde(default = "default_call_budget_ms")]
    pub call_budget_ms: u64,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        LimitsSpec { memory_mb: default_memory_mb(), call_budget_ms: default_call_budget_ms() }
    }
}

fn default_memory_mb() -> u64 {
    (Limits::default().memory_bytes >> 20) as u64
}

fn default_call_budget_ms() -> u64 {
    Limits::default().call_budget.as_millis() as u64
}

/// The top-level `limits:` section: what a run may use of the machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLimitsSpec {
    /// The memory budget: `4GiB`, `512MiB`, ... (`G`, `GB` and `GiB` all
    /// mean 1024³ bytes); default half of the machine's memory.
    pub memory: Option<String>,
    /// Where work past the budget spills: default `_scratch` in a local
    /// lake, the system's temporary folder for an HDFS lake.
    pub spill: Option<PathBuf>,
}

/// The top-level `history:` section: the lake's tables keep the versions
/// of their last `keep_runs` commits (Delta time travel); older versions'
/// files are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    /// Versions kept per table (at least 2).
    #[serde(default = "default_keep_runs")]
    pub keep_runs: usize,
}

impl Default for HistorySpec {
    fn default() -> Self {
        HistorySpec { keep_runs: default_keep_runs() }
    }
}

fn default_keep_runs() -> usize {
    7
}

/// A run's memory budget, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// Whether `limits.memory` set it (or it is the default).
    pub set: bool,
}

impl Default for MemoryBudget {
    /// Half the machine's memory (4 GiB when it cannot tell).
    fn default() -> Self {
        MemoryBudget { bytes: machine_memory().unwrap_or(8 << 30) / 2, set: false }
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&medallion_common::memory::size_text(self.bytes))?;
        if !self.set {
            write!(f, " (half the machine's memory; set limits.memory to change it)")?;
        }
        Ok(())
    }
}

/// Reads a size: a number and a unit among B, K, KB, KiB, M, MB, MiB, G,
/// GB, GiB, T, TB, TiB (each a power of 1024), in any case.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a size\n  hint: write it as 4GiB, 1536MiB or 512M");
    let number: f64 = number.parse().map_err(|_| bad())?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return Err(bad()),
    };
    let bytes = number * 1024f64.powi(power);
    if bytes.is_finite() && bytes < 1.0 {
        return Err(format!("`{text}` is no memory at all\n  hint: give a size above zero, such as 4GiB or 512MiB"));
    }
    if !bytes.is_finite() {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The memory this process may use: the machine's, or its cgroup's limit
/// when lower (Linux); `None` when it cannot tell.
pub fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib << 10)
    })?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|t| t.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |limit| limit.min(total)))
}

/// The `sources:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSpec {
    /// The folder the files are in.
    pub dir: PathBuf,
    /// What a malformed CSV record does: `fail` (default) or `quarantine`.
    #[serde(default)]
    pub on_bad_record: OnBadRecord,
    /// Bronze table name → its source.
    pub tables: BTreeMap<String, TableSource>,
}

/// One source: a CSV file, or a table of a SQLite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    /// A CSV file in `sources.dir`.
    pub csv: Option<String>,
    /// The header it must have.
    pub columns: Option<Vec<String>>,
    /// A SQLite file in `sources.dir`.
    pub sqlite: Option<String>,
    /// The table in it (default: the Bronze table's name).
    pub table: Option<String>,
}

/// A pipeline file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something at a position in the file.
    #[error("{}:{line}:{column}: {message}", file.display())]
    At {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// Something without a position (a `--set`, a missing file).
    #[error("{}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

/// What a run needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lake URL.
    pub lake: String,
    /// The plugins folder.
    pub plugins_dir: PathBuf,
    /// Per-instance plugin limits.
    pub limits: Limits,
    /// The run's memory budget.
    pub memory: MemoryBudget,
    /// The folder under which a run spills what does not fit the budget.
    pub spill: PathBuf,
    /// Versions of each lake table kept.
    pub keep_runs: usize,
    /// The Bronze sources.
    pub sources: Vec<SourceSpec>,
    /// The Silver tables.
    pub silver: SilverSpec,
    /// The Gold tables.
    pub gold: GoldSpec,
    /// Where Gold is stored, resolved (`sqlite:/abs/path` or a PostgreSQL URL).
    pub gold_store: Option<String>,
    /// `host serve` settings.
    pub server: ServerSpec,
}

/// Reads `file`, replaces environment variables, applies `--set key=value`
/// overrides, and parses the result.
pub fn load(file: &Path, overrides: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Spec, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.to_owned(), source })?;
    let text = interpolate(&text, env).map_err(|unset| ConfigError::At {
        file: file.to_owned(),
        line: unset.line,
        column: unset.column,
        message: format!(
            "environment variable `{}` is not set\n  hint: export it, or write ${{{}:-default}} to give a default",
            unset.name, unset.name
        ),
    })?;
    // Parse the text as written first, so that errors point into the file.
    let spec: Spec = serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(file, &e))?;
    if overrides.is_empty() {
        return Ok(spec);
    }
    let mut tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(file, &e))?;
    for assignment in overrides {
        apply_override(&mut tree, assignment).map_err(|message| ConfigError::Invalid {
            file: file.to_owned(),
            message: format!("--set {assignment}: {message}"),
        })?;
    }
    serde_yaml_ng::from_value(tree).map_err(|e| ConfigError::Invalid {
        file: file.to_owned(),
        message: format!("after --set: {}", with_suggestion(&e.to_string())),
    })
}

fn yaml_error(file: &Path, error: &serde_yaml_ng::Error) -> ConfigError {
    // serde_yaml appends " at line L column C"; the position goes in front.
    let text = error.to_string();
    let message = with_suggestion(text.split(" at line ").next().unwrap_or(&text));
    match error.location() {
        Some(at) => ConfigError::At { file: file.to_owned(), line: at.line(), column: at.column(), message },
        None => ConfigError::Invalid { file: file.to_owned(), message },
    }
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of ..."
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else { return message.to_owned() };
    let unknown = rest.split('`').next().unwrap_or_default();
    let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
    match medallion_common::suggest::nearest(unknown, expected.iter().copied()) {
        Some(name) => format!("{message}\n  hint: did you mean `{name}`?"),
        None => message.to_owned(),
    }
}

/// Where the key at `path` (`silver.tables.orders.clean.plugin`) is written
/// in a YAML text: 1-based line and column of the deepest part found.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut from = 0;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let key = format!("{segment}:");
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let content = line.trim_start().trim_start_matches("- ");
            let indent = line.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            if content.starts_with(&key) {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some((i + 1, indent + 1));
                parent_indent = Some(indent);
                from = i + 1;
            }
            None => {
                // A flow mapping on the parent's line: `clean: { plugin: x }`.
                if let Some((line, _)) = found
                    && let Some(column) = lines[line - 1].find(&key)
                {
                    found = Some((line, column + 1));
                }
                break;
            }
        }
    }
    found
}

/// `a.b.c=value`: sets a key, creating maps on the way; the value is parsed
/// as YAML (`--set plugins.limits.memory_mb=512` gives a number).
fn apply_override(tree: &mut serde_yaml_ng::Value, assignment: &str) -> Result<(), String> {
    let (key, value) = assignment.split_once('=').ok_or("expected key=value, as in sources.dir=/data")?;
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(value).unwrap_or_else(|_| serde_yaml_ng::Value::String(value.to_owned()));
    let mut node = tree;
    for part in key.split('.') {
        if part.is_empty() {
            return Err(format!("`{key}` has an empty part"));
        }
        if !node.is_mapping() {
            *node = serde_yaml_ng::Value::Mapping(Default::default());
        }
        let map = node.as_mapping_mut().ok_or("not a mapping")?;
        node = map.entry(serde_yaml_ng::Value::String(part.to_owned())).or_insert(serde_yaml_ng::Value::Null);
    }
    *node = value;
    Ok(())
}

/// The longest Gold table name: PostgreSQL keeps 63 bytes of a name, and a
/// publish names the table's staged copy's key `<name>__new_key`.
const GOLD_NAME_MOST: usize = 54;

/// A Gold table's name: an identifier in every store, that neither is a run
/// log table's nor looks like a table being published.
fn check_gold_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let identifier =
        chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier || name.len() > GOLD_NAME_MOST {
        return Err(format!(
            "`{name}` cannot name a Gold table: use a letter, then letters, digits and `_`, {GOLD_NAME_MOST} at most (it becomes a table in SQLite and PostgreSQL and an OData entity set)"
        ));
    }
    if ["runs", "run_tables", "run_stages"].contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "`{name}` is a table of the run log, which lives beside Gold: give the table another name"
        ));
    }
    if name.ends_with("__new") {
        return Err(format!("`{name}` ends in `__new`, as a table being published does: give it another name"));
    }
    Ok(())
}

impl Spec {
    /// Resolves paths (relative ones against `base`, the pipeline file's
    /// folder) and checks that every source file exists.
    pub fn plan(&self, file: &Path, base: &Path) -> Result<Plan, ConfigError> {
        self.plan_with(file, base, true)
    }

    /// The same for commands that read no source (`host serve`): source
    /// files need not exist.
    pub fn plan_without_sources(&self, file: &Path, base: &Path) -> Result<Plan, ConfigError> {
        self.plan_with(file, base, false)
    }

    /// Each source's file under `dir`, checked to exist when
    /// `check_sources`; or what is wrong.
    fn source_specs(&self, dir: &Path, check_sources: bool) -> Result<Vec<SourceSpec>, String> {
        let mut sources = Vec::new();
        for (table, source) in &self.sources.tables {
            let spec = match (&source.csv, &source.sqlite) {
                (Some(csv), None) => SourceSpec::Csv {
                    table: table.clone(),
                    path: dir.join(csv),
                    columns: source.columns.clone(),
                    on_bad_record: self.sources.on_bad_record,
                },
                (None, Some(sqlite)) => SourceSpec::Sqlite {
                    table: table.clone(),
                    path: dir.join(sqlite),
                    source_table: source.table.clone().unwrap_or_else(|| table.clone()),
                },
                _ => return Err(format!("sources.tables.{table}: give exactly one of `csv: FILE` or `sqlite: FILE`")),
            };
            let path = match &spec {
                SourceSpec::Csv { path, .. } | SourceSpec::Sqlite { path, .. } => path,
            };
            if check_sources && !path.is_file() {
                return Err(format!(
                    "sources.tables.{table}: {} does not exist\n  hint: generate sample sources with `host gen-data --out {}`, or set sources.dir",
                    path.display(),
                    dir.display()
                ));
            }
            sources.push(spec);
        }
        Ok(sources)
    }

    fn plan_with(&self, file: &Path, base: &Path, check_sources: bool) -> Result<Plan, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { file: file.to_owned(), message };
        let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        let dir = resolve(&self.sources.dir);
        if self.sources.tables.is_empty() {
            return Err(invalid("sources.tables is empty: name at least one source".to_owned()));
        }
        for name in self.sources.tables.keys() {
            check_table_name(name).map_err(|e| invalid(format!("sources.tables.{name}: {e}")))?;
        }
        for name in self.silver.tables.keys() {
            check_table_name(name).map_err(|e| invalid(format!("silver.tables.{name}: {e}")))?;
        }
        for name in self.gold.tables.keys() {
            check_gold_name(name).map_err(|e| invalid(format!("gold.tables.{name}: {e}")))?;
        }
        let sources = self.source_specs(&dir, check_sources).map_err(invalid)?;
        if self.history.keep_runs < 2 {
            return Err(invalid(format!(
                "history.keep_runs is {}: a table keeps at least 2 versions, so that a query another engine started on the version before the last commit can finish\n  hint: the default is 7",
                self.history.keep_runs
            )));
        }
        let limits = Limits::default()
            .with_memory_bytes((self.plugins.limits.memory_mb as usize) << 20)
            .with_call_budget(std::time::Duration::from_millis(self.plugins.limits.call_budget_ms));
        let lake = if self.lake.contains("://") {
            self.lake.clone()
        } else {
            resolve(Path::new(&self.lake)).display().to_string()
        };
        let memory = match &self.limits.memory {
            Some(text) => {
                MemoryBudget { bytes: parse_size(text).map_err(|e| invalid(format!("limits.memory: {e}")))?, set: true }
            }
            None => MemoryBudget::default(),
        };
        let spill = match (&self.limits.spill, lake.contains("://") && !lake.starts_with("file://")) {
            (Some(dir), _) => resolve(dir),
            (None, false) => Path::new(lake.strip_prefix("file://").unwrap_or(&lake)).join("_scratch"),
            (None, true) => std::env::temp_dir(),
        };
        self.silver.order().map_err(invalid)?;
        for (name, table) in &self.gold.tables {
            let reads = self.gold.reads(table, self.silver.tables.keys());
            if reads.is_empty() {
                return Err(invalid(format!(
                    "gold.tables.{name}.sql names no Silver table; the Silver tables are {}",
                    self.silver.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let gold_store = match &self.gold.store {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Some(url.clone()),
            Some(url) => Some(match url.strip_prefix("sqlite:") {
                Some(path) => format!("sqlite:{}", resolve(Path::new(path)).display()),
                None => {
                    return Err(invalid(format!(
                        "gold.store `{url}`: give sqlite:PATH or postgres://user@host:port/database"
                    )));
                }
            }),
        };
        Ok(Plan {
            lake,
            plugins_dir: resolve(&self.plugins.dir),
            limits,
            memory,
            spill,
            keep_runs: self.history.keep_runs,
            sources,
            silver: self.silver.clone(),
            gold: self.gold.clone(),
            gold_store,
            server: self.server.clone(),
        })
    }
}

#[cfg(test)]
mod locate_tests {
    use super::locate;

    #[test]
    fn keys_are_found_by_path_in_blocks_and_flow_mappings() {
        let text = "lake: x\nsilver:\n  tables:\n    a:\n      from: b\n      clean:\n        plugin: clean\n    c:\n      clean: { plugin: nope }\n";
        assert_eq!(locate(text, "silver.tables.a.clean.plugin"), Some((7, 9)));
        assert_eq!(locate(text, "silver.tables.c.clean.plugin"), Some((9, 16)));
        assert_eq!(locate(text, "silver.tables.a.key"), Some((4, 5)));
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1.5 GB"), Ok(3 << 29));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "lots", "4 parsecs", "0", "-1G", "GiB"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains("4GiB"), "{e}");
        }
    }
}

#[cfg(test)]
mod gold_name_tests {
    use super::check_gold_name;

    #[test]
    fn gold_names_fit_every_store_and_stay_clear_of_the_run_log() {
        assert!(check_gold_name("dm_customer_metrics").is_ok());
        assert!(check_gold_name(&format!("d{}", "x".repeat(53))).is_ok());
        assert!(check_gold_name(&format!("d{}", "x".repeat(54))).unwrap_err().contains("54 at most"));
        for bad in ["", "1day", "dm sales", "dm-sales", "dm\"x"] {
            assert!(check_gold_name(bad).unwrap_err().contains("cannot name a Gold table"), "{bad}");
        }
        assert!(check_gold_name("Runs").unwrap_err().contains("run log"));
        assert!(check_gold_name("dm_x__new").unwrap_err().contains("__new"));
    }
}
