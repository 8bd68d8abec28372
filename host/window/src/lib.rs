//! What a plugin asks of an input port's batches (contract 0.2.0): columns
//! the host computes over the port's whole input and appends to every batch
//! (counts, sums, means, extremes, ranks, over all rows or per group), and an
//! order the batches arrive in. With them a plugin that needs totals or ranks
//! (RFM's scores, a rank within a category, a mean over every review) works
//! batch by batch: it keeps no table, and its memory does not grow with the
//! data.
//!
//! One implementation ([`prepare`], feature `compute`) serves the host,
//! before it pushes, and the SDK's native test runner, so a plugin's own
//! tests see what the host will give it.
//!
//! Not for: anything a plugin computes itself.

#[cfg(feature = "compute")]
mod compute;

#[cfg(feature = "compute")]
pub use compute::{NeedError, prepare};

/// What an instance asks of the batches pushed on one input port.
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// The input port.
    pub port: String,
    /// Columns computed over the port's whole input, appended to every batch
    /// in this order.
    pub computed: Vec<Computed>,
    /// The order rows arrive in, by these columns (nulls last); empty: the
    /// order they come in.
    pub sorted_by: Vec<SortKey>,
}

/// Computed columns one port may ask for.
pub const MAX_COMPUTED: usize = 64;
/// Sort keys one port may ask for.
pub const MAX_SORT_KEYS: usize = 8;

/// Checks what an instance asks against the ports it declares: at most one
/// entry per port, every port an input of the plugin, at most
/// [`MAX_COMPUTED`] computed columns and [`MAX_SORT_KEYS`] sort keys each
/// (the host does this work outside the plugin's memory cap). Returns why
/// not.
pub fn check_ports(needs: &[Needs], inputs: &[&str]) -> Result<(), String> {
    for (i, asked) in needs.iter().enumerate() {
        let port = &asked.port;
        if !inputs.contains(&port.as_str()) {
            return Err(format!("`needs` names input port `{port}`, which it does not declare"));
        }
        if needs[..i].iter().any(|n| n.port == *port) {
            return Err(format!("`needs` names input port `{port}` twice"));
        }
        if asked.computed.len() > MAX_COMPUTED || asked.sorted_by.len() > MAX_SORT_KEYS {
            return Err(format!(
                "`needs` asks {} computed columns and {} sort keys of port `{port}`; the host gives at most {MAX_COMPUTED} and {MAX_SORT_KEYS}",
                asked.computed.len(),
                asked.sorted_by.len()
            ));
        }
    }
    Ok(())
}

impl Needs {
    /// Nothing asked yet of port `port`.
    pub fn on(port: &str) -> Self {
        Needs { port: port.to_owned(), computed: Vec::new(), sorted_by: Vec::new() }
    }

    /// Asks for a computed column.
    pub fn computed(mut self, column: Computed) -> Self {
        self.computed.push(column);
        self
    }

    /// Asks for the rows in ascending order of `column` (after those already
    /// asked for).
    pub fn sorted_by(mut self, column: &str) -> Self {
        self.sorted_by.push(SortKey { column: column.to_owned(), descending: false });
        self
    }

    /// Asks for the rows in descending order of `column`.
    pub fn sorted_by_descending(mut self, column: &str) -> Self {
        self.sorted_by.push(SortKey { column: column.to_owned(), descending: true });
        self
    }

    /// Whether nothing is asked: batches go as they come.
    pub fn is_empty(&self) -> bool {
        self.computed.is_empty() && self.sorted_by.is_empty()
    }
}

/// A column the host computes over a port's whole input.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// Its name in the pushed batches; no input column may have it.
    pub name: String,
    /// What it holds.
    pub aggregate: Aggregate,
    /// The input column it is computed from (`None` for [`Aggregate::Count`]).
    pub of: Option<String>,
    /// For `Sum` and `Mean`: each value weighted by this column (Σ of × w,
    /// and for the mean / Σ w); rows where either is null are skipped.
    pub weight: Option<String>,
    /// Computed per group of rows with equal values in this column (nulls
    /// are one group); `None`: over every row.
    pub per: Option<String>,
}

impl Computed {
    /// `name`, holding `aggregate` over every row (name the input column
    /// with [`Computed::of`]).
    pub fn new(name: &str, aggregate: Aggregate) -> Self {
        Computed { name: name.to_owned(), aggregate, of: None, weight: None, per: None }
    }

    /// The input column it is computed from.
    pub fn of(mut self, column: &str) -> Self {
        self.of = Some(column.to_owned());
        self
    }

    /// Weights each value by `column` (sums and means).
    pub fn weighted_by(mut self, column: &str) -> Self {
        self.weight = Some(column.to_owned());
        self
    }

    /// Computes it per group of equal values of `column`.
    pub fn per(mut self, column: &str) -> Self {
        self.per = Some(column.to_owned());
        self
    }
}

/// What a computed column holds, for each row, over the row's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Rows in the group (Int64).
    Count,
    /// Sum of the non-null values, added in input order (Float64; 0 when none).
    Sum,
    /// That sum over the number of values, or over the total weight (Float64;
    /// null when there is no value or the total weight is 0).
    Mean,
    /// The smallest non-null value (the column's own type; null when none).
    Min,
    /// The largest non-null value (the column's own type; null when none).
    Max,
    /// 1 + the rows of the group whose value is strictly smaller (Int64):
    /// ties share a rank; a null is smaller than every value.
    RankAscending,
    /// 1 + the rows of the group whose value is strictly larger (Int64):
    /// ties share a rank; a null is smaller than every value.
    RankDescending,
}

impl Aggregate {
    /// Every aggregate, in the contract's order.
    pub const ALL: [Aggregate; 7] = [
        Aggregate::Count,
        Aggregate::Sum,
        Aggregate::Mean,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::RankAscending,
        Aggregate::RankDescending,
    ];

    /// Its name in the contract (`rank-descending`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Mean => "mean",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::RankAscending => "rank-ascending",
            Aggregate::RankDescending => "rank-descending",
        }
    }
}

/// One column of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The column.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}
