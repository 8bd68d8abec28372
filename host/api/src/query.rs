//! Row selection for both APIs: the OData `$filter` language (also accepted
//! by the plain endpoints as `filter=`), typed against the table's columns,
//! and keyset positions for paging.
//!
//! Every name in a request is looked up in the table's columns; nothing from
//! the request text reaches a store or a format string.

use std::cmp::Ordering;

use medallion_common::date;
use medallion_store::SqlType;
use medallion_store::{Column, Values};

use super::snapshot::Table;

/// A request parameter that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    /// The parameter (`$filter`, `order_by`, ...).
    pub parameter: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl BadParameter {
    pub(super) fn new(parameter: &str, message: impl Into<String>) -> Self {
        BadParameter { parameter: parameter.to_owned(), message: message.into() }
    }
}

/// A literal value, typed to the column it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// No value.
    Null,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl Op {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
        }
    }

    fn flipped(self) -> Op {
        match self {
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            other => other,
        }
    }
}

/// Which text function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTest {
    /// `contains`.
    Contains,
    /// `startswith`.
    StartsWith,
    /// `endswith`.
    EndsWith,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// It does not hold.
    Not(Box<Filter>),
    /// `column op value`.
    Compare {
        /// The column's position.
        column: usize,
        /// The comparison.
        op: Op,
        /// The literal, of the column's type.
        value: Value,
    },
    /// `contains(column, 'text')` and friends.
    Text {
        /// The column's position (a text column).
        column: usize,
        /// Which function.
        test: TextTest,
        /// The text looked for.
        text: String,
        /// Whether the column is lower-cased first (`tolower(column)`).
        lower: bool,
    },
    /// `true` or `false`.
    Constant(bool),
}

impl Filter {
    /// Whether row `row` of `table` passes.
    pub fn test(&self, table: &Table, row: usize) -> bool {
        match self {
            Filter::And(a, b) => a.test(table, row) && b.test(table, row),
            Filter::Or(a, b) => a.test(table, row) || b.test(table, row),
            Filter::Not(a) => !a.test(table, row),
            Filter::Constant(b) => *b,
            Filter::Compare { column, op, value } => {
                let column = &table.data.columns[*column];
                match (column.is_valid(row), value) {
                    (false, Value::Null) => *op == Op::Eq,
                    (true, Value::Null) => *op == Op::Ne,
                    (false, _) => *op == Op::Ne,
                    (true, value) => compare_value(column, row, value).is_some_and(|o| op.holds(o)),
                }
            }
            Filter::Text { column, test, text, lower } => {
                let column = &table.data.columns[*column];
                let Values::Text(values) = &column.values else { return false };
                if !column.is_valid(row) {
                    return false;
                }
                let value = values.get(row);
                let owned;
                let value: &str = if *lower {
                    owned = value.to_lowercase();
                    &owned
                } else {
                    value
                };
                match test {
                    TextTest::Contains => value.contains(text.as_str()),
                    TextTest::StartsWith => value.starts_with(text.as_str()),
                    TextTest::EndsWith => value.ends_with(text.as_str()),
                }
            }
        }
    }
}

/// A cell against a literal of the column's type (`None` for a null cell).
pub fn compare_value(column: &Column, row: usize, value: &Value) -> Option<Ordering> {
    if !column.is_valid(row) {
        return None;
    }
    Some(match (&column.values, value) {
        (Values::Int(v), Value::Int(x)) => v[row].cmp(x),
        (Values::Int(v), Value::Double(x)) => (v[row] as f64).total_cmp(x),
        (Values::Double(v), Value::Double(x)) => v[row].total_cmp(x),
        (Values::Double(v), Value::Int(x)) => v[row].total_cmp(&(*x as f64)),
        (Values::Date(v), Value::Date(x)) => v[row].cmp(x),
        (Values::Text(v), Value::Text(x)) => v.get(row).cmp(x.as_str()),
        (Values::Bool(v), Value::Bool(x)) => (v[row] != 0).cmp(x),
        _ => return None,
    })
}

/// The name of a column's type, for messages.
pub fn type_name(kind: SqlType) -> &'static str {
    match kind {
        SqlType::Integer => "an integer",
        SqlType::Double => "a number",
        SqlType::Date => "a date (2024-01-31)",
        SqlType::Text => "text ('quoted')",
        SqlType::Boolean => "true or false",
    }
}

/// The longest `$filter` accepted, and the deepest nesting.
const MAX_FILTER: usize = 4096;
const MAX_DEPTH: usize = 32;

/// Parses `$filter` text against `table`'s columns.
pub fn parse_filter(text: &str, table: &Table, parameter: &str) -> Result<Filter, BadParameter> {
    if text.len() > MAX_FILTER {
        return Err(BadParameter::new(parameter, format!("longer than {MAX_FILTER} characters")));
    }
    let tokens = tokenize(text).map_err(|m| BadParameter::new(parameter, m))?;
    let mut parser = Parser { tokens, at: 0, table, parameter, depth: 0 };
    let filter = parser.or()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(parser.bad(format!("unexpected {} after a complete expression", token.describe())));
    }
    Ok(filter)
}

/// A value as a client writes it in a URL: typed by the column.
pub fn parse_literal(text: &str, column: &Column, parameter: &str) -> Result<Value, BadParameter> {
    let bad = || {
        BadParameter::new(parameter, format!("`{text}` is not {} (column `{}`)", type_name(column.kind), column.name))
    };
    Ok(match column.kind {
        SqlType::Integer => Value::Int(text.parse().map_err(|_| bad())?),
        SqlType::Double => Value::Double(text.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(bad)?),
        SqlType::Date => Value::Date(date::parse_iso(text.get(..10).unwrap_or(text)).ok_or_else(bad)?),
        SqlType::Text => Value::Text(text.to_owned()),
        SqlType::Boolean => Value::Bool(text.parse().map_err(|_| bad())?),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Date(String),
    Open,
    Close,
    Comma,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Text(t) => format!("'{t}'"),
            Token::Number(n) | Token::Date(n) => format!("`{n}`"),
            Token::Open => "`(`".to_owned(),
            Token::Close => "`)`".to_owned(),
            Token::Comma => "`,`".to_owned(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string is not closed: end it with '".to_owned()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Text(value));
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | ':' | '+'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let is_date = word.len() >= 10 && word.as_bytes()[4] == b'-' && word.as_bytes()[7] == b'-';
                tokens.push(if is_date { Token::Date(word) } else { Token::Number(word) });
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    table: &'a Table,
    parameter: &'a str,
    depth: usize,
}

/// An operand: a column (maybe lower-cased) or a literal.
enum Operand {
    Column { index: usize, lower: bool },
    Literal(Token),
}

impl Parser<'_> {
    fn bad(&self, message: String) -> BadParameter {
        BadParameter::new(self.parameter, message)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, token: &Token) -> Result<(), BadParameter> {
        match self.tokens.get(self.at) {
            Some(t) if t == token => {
                self.at += 1;
                Ok(())
            }
            Some(t) => Err(self.bad(format!("expected {} but found {}", token.describe(), t.describe()))),
            None => Err(self.bad(format!("expected {} but the expression ended", token.describe()))),
        }
    }

    fn or(&mut self) -> Result<Filter, BadParameter> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, BadParameter> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, BadParameter> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.bad(format!("nested deeper than {MAX_DEPTH}")));
        }
        let filter = if self.peek_word("not") {
            self.at += 1;
            Filter::Not(Box::new(self.unary()?))
        } else if self.tokens.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(&Token::Close)?;
            inner
        } else {
            self.comparison()?
        };
        self.depth -= 1;
        Ok(filter)
    }

    fn comparison(&mut self) -> Result<Filter, BadParameter> {
        for (name, test) in
            [("contains", TextTest::Contains), ("startswith", TextTest::StartsWith), ("endswith", TextTest::EndsWith)]
        {
            if self.peek_word(name) && self.tokens.get(self.at + 1) == Some(&Token::Open) {
                self.at += 2;
                let Operand::Column { index, lower } = self.operand()? else {
                    return Err(self.bad(format!("{name}(...) takes a column first")));
                };
                self.expect(&Token::Comma)?;
                let text = match self.tokens.get(self.at) {
                    Some(Token::Text(t)) => t.clone(),
                    _ => return Err(self.bad(format!("{name}(...) takes a 'quoted' text second"))),
                };
                self.at += 1;
                self.expect(&Token::Close)?;
                let column = &self.table.data.columns[index];
                if column.kind != SqlType::Text {
                    return Err(self.bad(format!("{name}(...) needs a text column; `{}` is not", column.name)));
                }
                let filter = Filter::Text { column: index, test, text, lower };
                return Ok(self.maybe_compared_to_bool(filter));
            }
        }
        let left = self.operand()?;
        let op = match self.tokens.get(self.at) {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => return Err(self.bad(format!("expected eq, ne, gt, ge, lt or le but found `{w}`"))),
            },
            Some(t) => return Err(self.bad(format!("expected eq, ne, gt, ge, lt or le but found {}", t.describe()))),
            None => {
                if let Operand::Literal(Token::Word(w)) = &left
                    && (w == "true" || w == "false")
                {
                    return Ok(Filter::Constant(w == "true"));
                }
                return Err(self.bad("expected a comparison (eq, ne, gt, ge, lt, le)".to_owned()));
            }
        };
        self.at += 1;
        let right = self.operand()?;
        match (left, right) {
            (Operand::Column { index, lower: false }, Operand::Literal(token)) => self.compare(index, op, &token),
            (Operand::Literal(token), Operand::Column { index, lower: false }) => {
                self.compare(index, op.flipped(), &token)
            }
            (Operand::Column { .. }, Operand::Column { .. }) => {
                Err(self.bad("comparing two columns is not supported; compare a column with a value".to_owned()))
            }
            (Operand::Column { lower: true, .. }, _) | (_, Operand::Column { lower: true, .. }) => {
                Err(self.bad("tolower(...) is supported inside contains, startswith and endswith".to_owned()))
            }
            (Operand::Literal(_), Operand::Literal(_)) => {
                Err(self.bad("a comparison needs a column on one side".to_owned()))
            }
        }
    }

    /// `contains(a, 'x') eq true` is what some clients send.
    fn maybe_compared_to_bool(&mut self, filter: Filter) -> Filter {
        let op = if self.peek_word("eq") {
            Op::Eq
        } else if self.peek_word("ne") {
            Op::Ne
        } else {
            return filter;
        };
        match self.tokens.get(self.at + 1) {
            Some(Token::Word(w)) if w == "true" || w == "false" => {
                self.at += 2;
                if (w == "true") == (op == Op::Eq) { filter } else { Filter::Not(Box::new(filter)) }
            }
            _ => filter,
        }
    }

    fn operand(&mut self) -> Result<Operand, BadParameter> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(self.bad("the expression ended where a column or a value was expected".to_owned()));
        };
        self.at += 1;
        match token {
            Token::Word(w) if matches!(w.as_str(), "tolower" | "toupper") => {
                self.expect(&Token::Open)?;
                let Operand::Column { index, .. } = self.operand()? else {
                    return Err(self.bad(format!("{w}(...) takes a column")));
                };
                self.expect(&Token::Close)?;
                if w == "toupper" {
                    return Err(self.bad("toupper(...) is not supported; use tolower(...)".to_owned()));
                }
                Ok(Operand::Column { index, lower: true })
            }
            Token::Word(w) if matches!(w.as_str(), "true" | "false" | "null") => Ok(Operand::Literal(Token::Word(w))),
            Token::Word(w) => match self.table.data.position(&w) {
                Some(index) => Ok(Operand::Column { index, lower: false }),
                None => Err(self.bad(unknown_column(self.table, &w))),
            },
            Token::Open | Token::Close | Token::Comma => {
                Err(self.bad(format!("expected a column or a value but found {}", token.describe())))
            }
            literal => Ok(Operand::Literal(literal)),
        }
    }

    fn compare(&self, index: usize, op: Op, token: &Token) -> Result<Filter, BadParameter> {
        let column = &self.table.data.columns[index];
        let mismatch =
            || self.bad(format!("`{}` is {}; {} is not", column.name, type_name(column.kind), token.describe()));
        let value = match (column.kind, token) {
            (_, Token::Word(w)) if w == "null" => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(self.bad("null can only be compared with eq or ne".to_owned()));
                }
                Value::Null
            }
            (SqlType::Integer, Token::Number(n)) => {
                let n = n.trim_end_matches(['L', 'l']);
                match n.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Double(n.parse::<f64>().map_err(|_| mismatch())?),
                }
            }
            (SqlType::Double, Token::Number(n)) => {
                Value::Double(n.trim_end_matches(['d', 'D', 'm', 'M', 'f', 'F']).parse().map_err(|_| mismatch())?)
            }
            (SqlType::Date, Token::Date(d) | Token::Text(d)) => {
                Value::Date(d.get(..10).and_then(date::parse_iso).ok_or_else(mismatch)?)
            }
            (SqlType::Text, Token::Text(t)) => Value::Text(t.clone()),
            (SqlType::Boolean, Token::Word(w)) if w == "true" || w == "false" => Value::Bool(w == "true"),
            _ => return Err(mismatch()),
        };
        Ok(Filter::Compare { column: index, op, value })
    }
}

/// The message for a column name that is not in the table.
pub fn unknown_column(table: &Table, name: &str) -> String {
    let names: Vec<&str> = table.data.columns.iter().map(|c| c.name.as_str()).collect();
    let shown: String = name.chars().take(64).collect();
    match medallion_common::suggest::nearest(&shown, names.iter().copied()) {
        Some(near) => format!("no column `{shown}` in {}; did you mean `{near}`?", table.name),
        None => format!("no column `{shown}` in {}; its columns are {}", table.name, names.join(", ")),
    }
}

/// Rows of `order` from `start` that pass `filter`, skipping `skip` of them
/// and taking at most `take`.
pub fn select(
    table: &Table,
    order: &[u32],
    filter: Option<&Filter>,
    start: usize,
    skip: usize,
    take: usize,
) -> Vec<usize> {
    match filter {
        None => {
            let from = start.saturating_add(skip).min(order.len());
            let to = from.saturating_add(take).min(order.len());
            order[from..to].iter().map(|&r| r as usize).collect()
        }
        Some(filter) => order[start.min(order.len())..]
            .iter()
            .map(|&r| r as usize)
            .filter(|&r| filter.test(table, r))
            .skip(skip)
            .take(take)
            .collect(),
    }
}

/// Rows that pass `filter` (all rows without one).
pub fn count(table: &Table, filter: Option<&Filter>) -> usize {
    match filter {
        None => table.data.rows(),
        Some(filter) => (0..table.data.rows()).filter(|&r| filter.test(table, r)).count(),
    }
}

/// The position in `order` just after the row whose sort values are `after`
/// (the keyset of the last row of the previous page).
pub fn position_after(table: &Table, order: &[u32], sort: &[(usize, bool)], after: &[Value]) -> usize {
    order.partition_point(|&row| {
        for (&(column, descending), value) in sort.iter().zip(after) {
            let column = &table.data.columns[column];
            // Nulls sort last (ascending), as in Table::order.
            let ordering = match (column.is_valid(row as usize), value) {
                (false, Value::Null) => Ordering::Equal,
                (false, _) => Ordering::Greater,
                (true, Value::Null) => Ordering::Less,
                (true, value) => compare_value(column, row as usize, value).unwrap_or(Ordering::Equal),
            };
            let ordering = if descending { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering == Ordering::Less;
            }
        }
        true
    })
}

/// The sort values of `row`, for a keyset token.
pub fn row_values(table: &Table, sort: &[(usize, bool)], row: usize) -> Vec<Value> {
    sort.iter()
        .map(|&(column, _)| {
            let column = &table.data.columns[column];
            if !column.is_valid(row) {
                return Value::Null;
            }
            match &column.values {
                Values::Int(v) => Value::Int(v[row]),
                Values::Double(v) => Value::Double(v[row]),
                Values::Date(v) => Value::Date(v[row]),
                Values::Text(v) => Value::Text(v.get(row).to_owned()),
                Values::Bool(v) => Value::Bool(v[row] != 0),
            }
        })
        .collect()
}
