//! The `silver:` section of `pipeline.yaml`, as written and as planned.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// `silver:`: the typed tables built from Bronze.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilverSpec {
    /// Silver table name → how it is built.
    pub tables: BTreeMap<String, SilverTableSpec>,
}

/// One Silver table: cleaned from a Bronze table, or derived by SQL from
/// other Silver tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilverTableSpec {
    /// The Bronze table it is cleaned from.
    pub from: Option<String>,
    /// The plugin step that casts and validates each batch.
    pub clean: Option<PluginStep>,
    /// The key: rows after the first with the same key are quarantined as
    /// `duplicate_key`.
    pub key: Option<String>,
    /// Foreign keys: a row whose value is not among the parent's keys is
    /// quarantined as `orphan_<parent>` (or the parent's `reason`).
    #[serde(default)]
    pub parents: Vec<ParentSpec>,
    /// Computed columns: name → SQL expression over the row's columns.
    #[serde(default)]
    pub derive: BTreeMap<String, String>,
    /// The table's columns, in order (default: all, without `_` columns).
    pub columns: Option<Vec<String>>,
    /// A table derived from other Silver tables by one SQL query.
    pub sql: Option<String>,
}

/// A plugin and its config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginStep {
    /// The plugin's name (as `host plugins list` shows it).
    pub plugin: String,
    /// Pin a version; default: the highest in the plugins folder.
    pub version: Option<String>,
    /// The plugin's config, handed to it as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// A foreign key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentSpec {
    /// The column holding the parent's key.
    pub column: String,
    /// The parent Silver table.
    pub table: String,
    /// The parent's key column (default: the same name as `column`).
    pub key: Option<String>,
    /// Columns copied from the parent onto each row.
    #[serde(default)]
    pub take: Vec<String>,
    /// Reason code for a row without a parent (default `orphan_<table>`).
    pub reason: Option<String>,
}

impl ParentSpec {
    /// The parent's key column.
    pub fn parent_key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.column)
    }

    /// The quarantine reason for an orphan.
    pub fn orphan_reason(&self) -> String {
        self.reason.clone().unwrap_or_else(|| format!("orphan_{}", self.table))
    }
}

impl SilverSpec {
    /// Table names in an order where every table comes after the tables it
    /// reads (its parents and the tables its SQL names), or what is wrong.
    pub fn order(&self) -> Result<Vec<String>, String> {
        let mut done: Vec<String> = Vec::new();
        let mut left: BTreeSet<&String> = self.tables.keys().collect();
        for (name, table) in &self.tables {
            match (&table.from, &table.sql) {
                (Some(_), None) => {
                    if table.clean.is_none() {
                        return Err(format!("silver.tables.{name}: `from` needs a `clean` plugin step"));
                    }
                }
                (None, Some(_)) => {
                    if table.clean.is_some() || table.key.is_some() || !table.parents.is_empty() {
                        return Err(format!(
                            "silver.tables.{name}: a `sql` table takes no `clean`, `key` or `parents`; shape it in the query"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "silver.tables.{name}: give exactly one of `from: BRONZE_TABLE` (with `clean`) or `sql: QUERY`"
                    ));
                }
            }
            for parent in &table.parents {
                if !self.tables.contains_key(&parent.table) {
                    return Err(format!(
                        "silver.tables.{name}.parents: `{}` is not a Silver table; the tables are {}",
                        parent.table,
                        self.names()
                    ));
                }
            }
        }
        while !left.is_empty() {
            let ready: Vec<&String> =
                left.iter().copied().filter(|name| self.reads(name).iter().all(|r| done.contains(r))).collect();
            if ready.is_empty() {
                let stuck: Vec<&str> = left.iter().map(|s| s.as_str()).collect();
                return Err(format!("silver.tables: {} read each other in a cycle", stuck.join(", ")));
            }
            for name in ready {
                left.remove(name);
                done.push(name.clone());
            }
        }
        Ok(done)
    }

    /// The Silver tables `name` reads.
    pub fn reads(&self, name: &str) -> Vec<String> {
        let Some(table) = self.tables.get(name) else { return Vec::new() };
        let mut reads: Vec<String> = table.parents.iter().map(|p| p.table.clone()).collect();
        if let Some(sql) = &table.sql {
            let words = sql_words(sql);
            reads.extend(self.tables.keys().filter(|t| *t != name && words.contains(t.as_str())).cloned());
        }
        reads
    }

    fn names(&self) -> String {
        self.tables.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    }
}

/// `gold:`: the datamart tables, each a SQL step over Silver and a KPI plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldSpec {
    /// Where Gold is stored: `sqlite:PATH` or `postgres://user@host:port/db`.
    pub store: Option<String>,
    /// PostgreSQL: how long, in seconds, a publish waits in all for other
    /// sessions (a report's open transaction) to let go of the live tables
    /// before the run fails with nothing published. It tries two seconds at
    /// a time, so readers that come meanwhile wait at most that long.
    /// Default 600.
    pub publish_wait_s: Option<u64>,
    /// Gold table name → how it is built.
    #[serde(default)]
    pub tables: BTreeMap<String, GoldTableSpec>,
}

/// One Gold table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldTableSpec {
    /// What the table holds, for the API's catalog.
    pub description: Option<String>,
    /// The SQL query over Silver tables that shapes the table's input.
    pub sql: String,
    /// The KPI plugin that computes the business columns.
    pub kpi: Option<PluginStep>,
    /// The columns that identify a row (for paging and OData keys).
    #[serde(default)]
    pub key: Vec<String>,
    /// The API's default sort column.
    pub order_by: Option<String>,
    /// The reference API's route for this table (`/gold/sales/daily`).
    pub route: Option<String>,
    /// An integer or date column the query may be run over one range of at
    /// a time, when its input is too large for the run's memory budget:
    /// each range sees only the rows, in every Silver table it reads that
    /// has the column, whose value falls in it (null values in the last
    /// range), and the results are concatenated in range order. Right when
    /// every row the query gives depends only on input rows with its own
    /// value of the column (a group-by on it, joins on it), not otherwise.
    pub split_by: Option<String>,
}

impl GoldSpec {
    /// The Silver tables a Gold table's SQL names.
    pub fn reads<'a>(&self, table: &GoldTableSpec, silver: impl Iterator<Item = &'a String>) -> Vec<String> {
        let words = sql_words(&table.sql);
        silver.filter(|t| words.contains(t.as_str())).cloned().collect()
    }
}

/// The identifiers a SQL text mentions (table and column names among them):
/// what tells which tables a step reads and which columns it needs.
pub fn sql_words(sql: &str) -> BTreeSet<&str> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect()
}
