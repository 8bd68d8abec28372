//! Generates sources shaped like the reference project's: four CSV files and
//! the products SQLite file, deterministic for a given scale and seed.
//!
//! Scale 1 is about the reference's size: 2M customers, 6M orders, about 18M
//! order items, 4M reviews (over 1 GB of CSV). The products are the real
//! catalogue (20,000 rows), copied as is. Each file carries realistic dirt at
//! small rates, so that every cleaning rule has something to do: null and
//! non-numeric ids, duplicate rows (exact, and same key with other values),
//! malformed and impossible dates, zero and negative amounts and quantities,
//! orphan foreign keys, ratings outside 1..5, and review texts with quotes,
//! commas and newlines.
//!
//! Not for: reading or cleaning data; this crate only writes it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use medallion_common::date;

mod rng;

use rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// 1.0 is the reference's size; 0.01 makes a quick sample.
    pub scale: f64,
    /// Same seed, same bytes.
    pub seed: u64,
    /// The real products catalogue (`products_data.db`, table `products`
    /// with ids 1..=n) to copy.
    pub products_db: PathBuf,
}

/// Row counts of what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// (file name, data rows, bytes) per file.
    pub files: Vec<(String, u64, u64)>,
}

/// Base row counts at scale 1.
const CUSTOMERS: f64 = 2_000_000.0;
const ORDERS: f64 = 6_000_000.0;
const REVIEWS: f64 = 4_000_000.0;

/// Writes the five sources into `out` (created if missing), one thread per file.
pub fn generate(spec: &Spec, out: &Path) -> std::io::Result<Written> {
    let products = count_products(&spec.products_db)?;
    std::fs::create_dir_all(out)?;
    let customers = ((CUSTOMERS * spec.scale).round() as u64).max(10);
    let orders = ((ORDERS * spec.scale).round() as u64).max(30);
    let reviews = ((REVIEWS * spec.scale).round() as u64).max(20);
    let counts = Counts { customers, orders, products };
    let seed = spec.seed;
    let results = std::thread::scope(|scope| {
        let jobs = [
            scope.spawn(|| write_csv(out, "customers.csv", |w| customers_csv(w, &counts, Rng::new(seed, 1)))),
            scope.spawn(|| write_csv(out, "orders.csv", |w| orders_csv(w, &counts, Rng::new(seed, 2)))),
            scope.spawn(|| write_csv(out, "order_items.csv", |w| items_csv(w, &counts, Rng::new(seed, 2)))),
            scope.spawn(|| {
                write_csv(out, "product_reviews.csv", |w| reviews_csv(w, &counts, reviews, Rng::new(seed, 4)))
            }),
        ];
        jobs.map(|job| job.join().unwrap_or_else(|_| Err(std::io::Error::other("a generator thread panicked"))))
    });
    let mut written = Written::default();
    for result in results {
        written.files.push(result?);
    }
    let products = out.join("products_data.db");
    std::fs::copy(&spec.products_db, &products)?;
    written.files.push(("products_data.db".to_owned(), counts.products, std::fs::metadata(&products)?.len()));
    Ok(written)
}

/// The number of products in the catalogue, with a clear error when it is
/// not the reference's catalogue.
fn count_products(db: &Path) -> std::io::Result<u64> {
    let invalid = |why: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("products catalogue {}: {why}", db.display()))
    };
    if !db.is_file() {
        return Err(invalid("not found".to_owned()));
    }
    let connection = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| invalid(e.to_string()))?;
    let count: i64 = connection
        .query_row("SELECT count(*) FROM products", [], |row| row.get(0))
        .map_err(|e| invalid(format!("{e} (it needs a `products` table)")))?;
    u64::try_from(count).ok().filter(|&n| n > 0).ok_or_else(|| invalid("the `products` table is empty".to_owned()))
}

struct Counts {
    customers: u64,
    orders: u64,
    products: u64,
}

fn write_csv(
    dir: &Path,
    name: &str,
    body: impl FnOnce(&mut Csv) -> std::io::Result<()>,
) -> std::io::Result<(String, u64, u64)> {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let mut csv = Csv { out: BufWriter::with_capacity(1 << 20, File::create(&partial)?), rows: 0 };
    body(&mut csv)?;
    csv.out.flush()?;
    drop(csv.out);
    // A killed generator leaves a `.partial` file, never a short CSV.
    std::fs::rename(&partial, &path)?;
    Ok((name.to_owned(), csv.rows, std::fs::metadata(&path)?.len()))
}

/// A CSV writer that quotes as RFC 4180 asks.
struct Csv {
    out: BufWriter<File>,
    rows: u64,
}

/// One field of a row.
enum F<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

impl F<'_> {
    fn reborrow(&self) -> F<'_> {
        match self {
            F::Int(v) => F::Int(*v),
            F::Text(t) => F::Text(t),
            F::Null => F::Null,
        }
    }
}

impl Csv {
    fn header(&mut self, names: &[&str]) -> std::io::Result<()> {
        self.out.write_all(names.join(",").as_bytes())?;
        self.out.write_all(b"\n")
    }

    fn row(&mut self, fields: &[F<'_>]) -> std::io::Result<()> {
        let mut ints = itoa::Buffer::new();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            match field {
                F::Int(v) => self.out.write_all(ints.format(*v).as_bytes())?,
                F::Text(t) if t.contains([',', '"', '\n', '\r']) => {
                    self.out.write_all(b"\"")?;
                    self.out.write_all(t.replace('"', "\"\"").as_bytes())?;
                    self.out.write_all(b"\"")?;
                }
                F::Text(t) => self.out.write_all(t.as_bytes())?,
                F::Null => {}
            }
        }
        self.out.write_all(b"\n")?;
        self.rows += 1;
        Ok(())
    }
}

const COUNTRIES: [&str; 10] =
    ["France", "Germany", "Spain", "Italy", "Belgium", "Netherlands", "Portugal", "USA", "UK", "Morocco"];
const PAYMENTS: [&str; 4] = ["credit_card", "debit_card", "paypal", "cash"];
const GENDERS: [&str; 2] = ["Male", "Female"];

/// An id as written, with the id dirt: 0.05% empty, 0.05% not a number.
fn id_field(rng: &mut Rng, id: u64, text: &mut String) -> Option<()> {
    match rng.below(10_000) {
        0..=4 => None,
        5..=9 => {
            text.clear();
            text.push_str("id-");
            text.push_str(itoa::Buffer::new().format(id));
            Some(())
        }
        _ => {
            text.clear();
            text.push_str(itoa::Buffer::new().format(id));
            Some(())
        }
    }
}

fn id<'a>(rng: &mut Rng, id: u64, text: &'a mut String) -> F<'a> {
    match id_field(rng, id, text) {
        None => F::Null,
        Some(()) => F::Text(text),
    }
}

/// A date `days` after 2018-01-01, with the date dirt: 0.05% impossible
/// (`2023-02-30`), 0.05% malformed.
fn date(rng: &mut Rng, start_year: i32, span_days: u64, text: &mut String) {
    text.clear();
    match rng.below(10_000) {
        0..=4 => text.push_str("2023-02-30"),
        5..=6 => text.push_str("31/12/2023"),
        7..=9 => text.push_str("not a date"),
        _ => {
            let first = date::days_from_civil(i64::from(start_year), 1, 1).unwrap_or_default();
            text.push_str(&date::iso(first + rng.below(span_days) as i32));
        }
    }
}

/// A money amount with two decimals; 0.2% zero, 0.1% negative.
fn amount(rng: &mut Rng, max_cents: u64, text: &mut String) {
    use std::fmt::Write as _;
    text.clear();
    let cents = match rng.below(1000) {
        0..=1 => 0,
        2 => -(rng.below(max_cents) as i64) - 1,
        _ => rng.below(max_cents) as i64 + 1,
    };
    let sign = if cents < 0 { "-" } else { "" };
    let _ = write!(text, "{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100);
}

fn customers_csv(csv: &mut Csv, counts: &Counts, mut rng: Rng) -> std::io::Result<()> {
    csv.header(&["customer_id", "name", "email", "gender", "signup_date", "country"])?;
    let (mut id_text, mut name, mut email, mut signup) = (String::new(), String::new(), String::new(), String::new());
    for n in 1..=counts.customers {
        use std::fmt::Write as _;
        let field = id(&mut rng, n, &mut id_text);
        name.clear();
        let _ = write!(name, "Customer {n}");
        email.clear();
        let _ = write!(email, "customer{n}@example.com");
        let gender = if rng.below(20) == 0 { F::Null } else { F::Text(GENDERS[rng.below(2) as usize]) };
        date(&mut rng, 2018, 6 * 365, &mut signup);
        let country = if rng.below(25) == 0 { F::Null } else { F::Text(COUNTRIES[rng.below(10) as usize]) };
        let row = [field, F::Text(&name), F::Text(&email), gender, F::Text(&signup), country];
        csv.row(&row)?;
        duplicate(csv, &mut rng, &row)?;
    }
    Ok(())
}

/// 0.3% of rows are written twice: 0.2% exactly, 0.1% with the same key and
/// the last column changed (emptied), as a source re-sending a corrected row
/// would.
fn duplicate(csv: &mut Csv, rng: &mut Rng, row: &[F<'_>]) -> std::io::Result<()> {
    match rng.below(1000) {
        0..=1 => csv.row(row),
        2 => {
            let mut changed: Vec<F<'_>> = row.iter().map(F::reborrow).collect();
            if let Some(last) = changed.last_mut() {
                *last = F::Null;
            }
            csv.row(&changed)
        }
        _ => Ok(()),
    }
}

/// A foreign key into 1..=max, 0.1% of them orphans (past the end).
fn foreign(rng: &mut Rng, max: u64) -> i64 {
    if rng.below(1000) == 0 { (max + 1 + rng.below(1000)) as i64 } else { (rng.below(max) + 1) as i64 }
}

fn orders_csv(csv: &mut Csv, counts: &Counts, mut rng: Rng) -> std::io::Result<()> {
    csv.header(&["order_id", "customer_id", "order_date", "total_amount", "payment_method", "shipping_country"])?;
    let (mut id_text, mut when, mut total) = (String::new(), String::new(), String::new());
    for n in 1..=counts.orders {
        let field = id(&mut rng, n, &mut id_text);
        let customer = foreign(&mut rng, counts.customers);
        date(&mut rng, 2022, 3 * 365, &mut when);
        amount(&mut rng, 200_000, &mut total);
        let row = [
            field,
            F::Int(customer),
            F::Text(&when),
            F::Text(&total),
            F::Text(PAYMENTS[rng.below(4) as usize]),
            F::Text(COUNTRIES[rng.below(10) as usize]),
        ];
        csv.row(&row)?;
        duplicate(csv, &mut rng, &row)?;
    }
    Ok(())
}

/// Items follow the orders' id sequence (the same rng stream decides nothing
/// else); 1 to 5 items per order, 3 on average.
fn items_csv(csv: &mut Csv, counts: &Counts, mut rng: Rng) -> std::io::Result<()> {
    csv.header(&["order_item_id", "order_id", "product_id", "quantity", "unit_price"])?;
    let (mut id_text, mut price) = (String::new(), String::new());
    let mut item = 0u64;
    for order in 1..=counts.orders {
        for _ in 0..=rng.below(5) {
            item += 1;
            let field = id(&mut rng, item, &mut id_text);
            let order_ref =
                if rng.below(1000) == 0 { (counts.orders + 1 + rng.below(1000)) as i64 } else { order as i64 };
            let quantity = match rng.below(1000) {
                0..=1 => 0,
                2 => -1,
                _ => rng.below(10) as i64 + 1,
            };
            amount(&mut rng, 50_000, &mut price);
            let row = [
                field,
                F::Int(order_ref),
                F::Int(foreign(&mut rng, counts.products)),
                F::Int(quantity),
                F::Text(&price),
            ];
            csv.row(&row)?;
            duplicate(csv, &mut rng, &row)?;
        }
    }
    Ok(())
}

const REVIEW_TEXTS: [&str; 8] = [
    "Great product",
    "Not what I expected",
    "Fast delivery, good quality",
    "The box said \"waterproof\", it is not",
    "Works fine.\nWould buy again",
    "Terrible, broke after a week",
    "Good value for money",
    "Ok",
];

fn reviews_csv(csv: &mut Csv, counts: &Counts, reviews: u64, mut rng: Rng) -> std::io::Result<()> {
    csv.header(&["review_id", "product_id", "customer_id", "rating", "review_text", "review_date"])?;
    let (mut id_text, mut when) = (String::new(), String::new());
    for n in 1..=reviews {
        let field = id(&mut rng, n, &mut id_text);
        let rating = match rng.below(1000) {
            0..=1 => 0,
            2 => 6,
            _ => rng.below(5) as i64 + 1,
        };
        let text = if rng.below(10) == 0 { F::Null } else { F::Text(REVIEW_TEXTS[rng.below(8) as usize]) };
        date(&mut rng, 2022, 3 * 365, &mut when);
        let row = [
            field,
            F::Int(foreign(&mut rng, counts.products)),
            F::Int(foreign(&mut rng, counts.customers)),
            F::Int(rating),
            text,
            F::Text(&when),
        ];
        csv.row(&row)?;
        duplicate(csv, &mut rng, &row)?;
    }
    Ok(())
}
