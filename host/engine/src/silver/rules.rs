//! Silver's relational rules for one table, the same with data and without
//! (`host validate` runs them on empty frames): the first reason that applies
//! to a row (`duplicate_key`, then `orphan_<parent>` per parent), the
//! parents' `take` columns, `derive` columns, the output columns; and SQL
//! tables over the tables built before them.

use std::collections::{BTreeMap, HashMap};

use medallion_pipeline::SilverTableSpec;
use polars::prelude::{DataFrame, Expr, IntoLazy, LazyFrame, NULL, PolarsError, col, lit, when};

use super::{REASON, SilverError};

/// The relational rules of one table, apart from any data: the checks
/// `host validate` runs on empty frames are the ones a run applies.
pub(super) struct Rules<'a> {
    /// The table's name.
    pub(super) table: &'a str,
    /// What `pipeline.yaml` says of it.
    pub(super) spec: &'a SilverTableSpec,
}

impl Rules<'_> {
    fn engine_error(&self, e: impl std::fmt::Display) -> SilverError {
        super::engine_error(self.table, e)
    }

    /// Reasons for the relational checks; returns (kept, rejected).
    pub(super) fn relational(
        &self,
        frame: &mut DataFrame,
        frames: &HashMap<String, DataFrame>,
    ) -> Result<(DataFrame, DataFrame), SilverError> {
        let table = self.spec;
        let polars_error = |e: PolarsError| self.engine_error(e);
        let columns: Vec<String> = frame.get_column_names().iter().map(|c| c.to_string()).collect();
        let has = |c: &str| columns.iter().any(|n| n == c);
        let mut reasons: Vec<(Expr, String)> = Vec::new();
        if let Some(key) = &table.key {
            if !has(key) {
                return Err(self.unknown_column("key", key, &columns));
            }
            reasons.push((col(key.as_str()).is_first_distinct().not(), "duplicate_key".to_owned()));
        }
        for parent in &table.parents {
            if !has(&parent.column) {
                return Err(self.unknown_column("parents.column", &parent.column, &columns));
            }
            let parent_frame = frames.get(&parent.table).ok_or_else(|| {
                self.engine_error(format!("parent `{}` is not built before this table", parent.table))
            })?;
            let keys = parent_frame.column(parent.parent_key()).map_err(|_| {
                self.engine_error(format!(
                    "parent `{}` has no column `{}`; give the parent's key with `key:`",
                    parent.table,
                    parent.parent_key()
                ))
            })?;
            let found = col(parent.column.as_str())
                .is_in(polars::prelude::lit(keys.as_materialized_series().clone()).implode(false), false)
                .fill_null(false);
            reasons.push((found.not(), parent.orphan_reason()));
        }
        // Nested from the last check out, so that the first check that
        // applies gives the reason.
        let mut reason = lit(NULL).cast(polars::prelude::DataType::String);
        for (condition, code) in reasons.into_iter().rev() {
            reason = when(condition).then(lit(code)).otherwise(reason);
        }
        let checked = std::mem::take(frame).lazy().with_column(reason.alias(REASON)).collect().map_err(polars_error)?;
        let rejected = checked.clone().lazy().filter(col(REASON).is_not_null()).collect().map_err(polars_error)?;
        let mut kept = checked.lazy().filter(col(REASON).is_null()).drop(polars::prelude::cols([REASON]));
        for parent in table.parents.iter().filter(|p| !p.take.is_empty()) {
            let parent_frame = &frames[&parent.table];
            let mut taken: Vec<Expr> = vec![col(parent.parent_key()).alias(parent.column.as_str())];
            taken.extend(parent.take.iter().map(|c| col(c.as_str())));
            let right = parent_frame.clone().lazy().select(taken);
            kept = kept.join(
                right,
                [col(parent.column.as_str())],
                [col(parent.column.as_str())],
                polars::prelude::JoinArgs::new(polars::prelude::JoinType::Inner),
            );
        }
        for (name, expression) in &table.derive {
            let expr = polars::sql::sql_expr(expression).map_err(|e| {
                SilverError::Config(format!("silver.tables.{}.derive.{name}: `{expression}`: {e}", self.table))
            })?;
            kept = kept.with_column(expr.alias(name.as_str()));
        }
        let columns = self.output_columns(table, &kept)?;
        kept = kept.select(columns);
        let kept = kept.collect().map_err(polars_error)?;
        Ok((kept, rejected))
    }

    fn output_columns(&self, table: &SilverTableSpec, frame: &LazyFrame) -> Result<Vec<Expr>, SilverError> {
        let schema = frame.clone().collect_schema().map_err(|e| self.engine_error(e))?;
        let available: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        match &table.columns {
            Some(columns) => columns
                .iter()
                .map(|c| {
                    if available.contains(c) {
                        Ok(col(c.as_str()))
                    } else {
                        Err(self.unknown_column("columns", c, &available))
                    }
                })
                .collect(),
            None => Ok(available.iter().filter(|c| !c.starts_with('_')).map(|c| col(c.as_str())).collect()),
        }
    }

    fn unknown_column(&self, field: &str, name: &str, columns: &[String]) -> SilverError {
        SilverError::Config(format!(
            "silver.tables.{}.{field}: no column `{name}` after cleaning; the columns are {}",
            self.table,
            columns.iter().filter(|c| !c.starts_with('_')).cloned().collect::<Vec<_>>().join(", ")
        ))
    }

    /// Runs a `sql` table's query over the tables built before it.
    pub(super) fn run_sql(&self, sql: &str, frames: &HashMap<String, DataFrame>) -> Result<DataFrame, SilverError> {
        let mut context = polars::sql::SQLContext::new();
        for (name, frame) in frames {
            context.register(name, frame.clone().lazy());
        }
        context
            .execute(sql)
            .and_then(LazyFrame::collect)
            .map_err(|e| SilverError::Config(format!("silver.tables.{}.sql: {e}", self.table)))
    }
}

/// Adds the relational checks' reasons of `frame` to `reasons`.
pub(super) fn count_reasons(frame: &DataFrame, reasons: &mut BTreeMap<String, u64>) -> Result<(), String> {
    if frame.height() == 0 {
        return Ok(());
    }
    let column = frame.column(REASON).map_err(|e| e.to_string())?;
    let strings = column.str().map_err(|e| e.to_string())?;
    for reason in strings.iter() {
        *reasons.entry(reason.unwrap_or("unknown").to_owned()).or_default() += 1;
    }
    Ok(())
}
