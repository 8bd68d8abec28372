//! `host serve` through the real binary and real HTTP: the reference routes
//! and bodies, stable paging, filters, CSV, ETag and gzip, OData, the auth
//! attacks, the injection attempts, and the same answers from the SQLite and
//! the PostgreSQL store.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use medallion_tests::Pause;
use medallion_tests::postgres::Postgres;

use crate::gold::Setup;
use crate::util::text;

const SECRET: &str = "a-test-secret-that-is-long-enough-to-sign-tokens";
pub(crate) const PASSWORD: &str = "correct-horse-battery-staple";

/// A `host serve` process. It runs under a shell that stops it when this
/// test process's end closes the shell's standard input, so that a server
/// held in a static does not outlive the tests.
pub(crate) struct Server {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    pub(crate) address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| medallion_api::auth::hash_password(PASSWORD).unwrap_or_else(|e| panic!("{e}")))
}

impl Server {
    pub(crate) fn start(setup: &Setup, store: &str, extra: &[&str]) -> Server {
        Server::start_with(setup, store, extra, &[])
    }

    /// A server with extra environment variables (`MEDALLION_FAULT`).
    fn start_with(setup: &Setup, store: &str, extra: &[&str], env: &[(&str, String)]) -> Server {
        let mut inner = setup.command(&["serve"], store);
        inner.envs(env.iter().map(|(k, v)| (k, v)));
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$@" & pid=$!; read _; kill -INT $pid; wait $pid"#)
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .args(["--listen", "127.0.0.1:0", "--poll-seconds", "1"])
            .args(extra);
        // The suites send wrong passwords on purpose, all from 127.0.0.1;
        // the limit on them has a test of its own.
        if !extra.iter().any(|a| a.contains("failed_logins_before_wait")) {
            command.args(["--set", "server.failed_logins_before_wait=1000000"]);
        }
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
            .env("MEDALLION_JWT_SECRET", SECRET)
            .env("MEDALLION_ANALYST_HASH", password_hash())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start host serve: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap_or_else(|e| panic!("{e}"));
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("host serve did not say where it listens: {line:?}"))
            .to_owned();
        Server { child, stdin, address }
    }

    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        request(&self.address, "GET", path, headers, b"")
    }

    fn token(&self) -> String {
        let body = format!("username=analyst&password={PASSWORD}");
        let answer = request(
            &self.address,
            "POST",
            "/auth/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        let json = answer.json();
        assert_eq!(json["token_type"], "bearer");
        json["access_token"].as_str().unwrap_or_else(|| panic!("no token: {json}")).to_owned()
    }

    /// GET with a fresh Bearer token.
    fn authed(&self, path: &str) -> Answer {
        let bearer = format!("Bearer {}", self.token());
        self.get(path, &[("Authorization", &bearer)])
    }
}

/// An HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request, with the headers given and no others the tests
/// would notice: ureq without decompression (the tests read gzip bodies as
/// sent), answering every status rather than failing on 4xx and 5xx.
fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut builder = ureq::http::Request::builder().method(method).uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let sent = if body.is_empty() {
        agent.run(builder.body(()).unwrap_or_else(|e| panic!("{method} {path}: {e}")))
    } else {
        agent.run(builder.body(body.to_vec()).unwrap_or_else(|e| panic!("{method} {path}: {e}")))
    };
    let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
    Answer { status: response.status().as_u16(), headers, body }
}

/// While one address floods `POST /auth/login` with wrong passwords, users
/// logging in for the first time from another address get in, each within a
/// second: the flood waits (429) after a few failures and takes no hashing
/// slot, and password checks run off the threads that answer requests.
#[test]
fn a_flood_of_wrong_passwords_from_one_address_locks_no_one_else_out() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const USERS: usize = 20;
    let (setup, _) = sqlite_served();
    let users: Vec<String> = (0..USERS).map(|i| format!("server.users.user{i}={}", password_hash())).collect();
    let mut extra = vec!["--set", "server.failed_logins_before_wait=5"];
    for user in &users {
        extra.extend(["--set", user.as_str()]);
    }
    let server = Server::start(setup, &setup.sqlite(), &extra);
    let address: std::net::SocketAddr = server.address.parse().unwrap_or_else(|e| panic!("{e}"));
    let (stop, flooded, throttled) = (AtomicBool::new(false), AtomicUsize::new(0), AtomicUsize::new(0));
    let logins: Vec<(u16, std::time::Duration)> = std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let status = wrong_login_from([127, 0, 0, 2], address);
                    flooded.fetch_add(1, Ordering::Relaxed);
                    if status == 429 {
                        throttled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // The flood is under way before the first user comes.
        while flooded.load(Ordering::Relaxed) < 50 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let logins = (0..USERS)
            .map(|i| {
                let started = std::time::Instant::now();
                let body = format!("username=user{i}&password={PASSWORD}");
                let form = [("Content-Type", "application/x-www-form-urlencoded")];
                let answer = request(&server.address, "POST", "/auth/login", &form, body.as_bytes());
                (answer.status, started.elapsed())
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        logins
    });
    let (flooded, throttled) = (flooded.into_inner(), throttled.into_inner());
    let slowest = logins.iter().map(|(_, took)| *took).max().unwrap_or_default();
    eprintln!("flood: {flooded} wrong logins, {throttled} refused with 429; slowest first login {slowest:?}");
    assert!(throttled > flooded / 2, "the flooding address must wait: {throttled} of {flooded} refused with 429");
    for (i, (status, took)) in logins.iter().enumerate() {
        assert_eq!(*status, 200, "user{i}'s first login, during a flood of {flooded} wrong passwords");
        assert!(*took < std::time::Duration::from_secs(1), "user{i}'s first login took {took:?}");
    }
}

/// One wrong login sent from `source` (an address of the loopback range),
/// on a connection of its own; its status.
fn wrong_login_from(source: [u8; 4], server: std::net::SocketAddr) -> u16 {
    use std::io::Write;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap_or_else(|e| panic!("{e}"));
    socket.bind(&std::net::SocketAddr::from((source, 0)).into()).unwrap_or_else(|e| panic!("bind: {e}"));
    if socket.connect(&server.into()).is_err() {
        return 0;
    }
    let mut stream: std::net::TcpStream = socket.into();
    let body = "username=user0&password=guess";
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    if stream.write_all(head.as_bytes()).is_err() || stream.read_to_string(&mut answer).is_err() {
        return 0;
    }
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// One Gold built once for the read-only tests, served from SQLite.
fn sqlite_served() -> &'static (Setup, Server) {
    static SHARED: OnceLock<(Setup, Server)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let setup = Setup::new("0.002");
        setup.run(&["--ingest-date", "2026-11-24"], &setup.sqlite());
        let server = Server::start(&setup, &setup.sqlite(), &[]);
        (setup, server)
    })
}

const ROUTES: [(&str, &str); 5] = [
    ("/gold/sales/daily", "dm_sales_daily"),
    ("/gold/sales/by-product", "dm_sales_by_product"),
    ("/gold/customers/metrics", "dm_customer_metrics"),
    ("/gold/products/reviews-impact", "dm_product_reviews_impact"),
    ("/gold/stock/performance", "dm_stock_performance"),
];

fn the_reference_routes_answer_with_the_reference_bodies(server: &Server) {
    let health = server.get("/health", &[]);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let tables = server.authed("/gold/tables").json();
    assert_eq!(tables["schema"], "datamart");
    assert_eq!(tables["tables"].as_array().map(Vec::len), Some(5), "{tables}");
    let bearer = format!("Bearer {}", server.token());
    for (route, table) in ROUTES {
        let page = server.get(&format!("{route}?page=1&page_size=10"), &[("Authorization", &bearer)]);
        assert_eq!(page.status, 200, "{route}: {}", page.text());
        let body = page.json();
        for key in [
            "table",
            "schema",
            "page",
            "page_size",
            "total_rows",
            "total_pages",
            "order_by",
            "order_dir",
            "columns",
            "data",
        ] {
            assert!(body.get(key).is_some(), "{route} lacks {key}: {body}");
        }
        assert_eq!(body["table"], table);
        assert_eq!(body["order_dir"], "desc", "the reference's default direction");
        assert_eq!(
            body["data"].as_array().map(Vec::len),
            Some(10.min(body["total_rows"].as_u64().unwrap_or(0) as usize))
        );
        let total = body["total_rows"].as_u64().unwrap_or(0);
        assert_eq!(body["total_pages"].as_u64(), Some(total.div_ceil(10)));
        let first = &body["data"][0];
        for column in body["columns"].as_array().into_iter().flatten() {
            assert!(first.get(column.as_str().unwrap_or_default()).is_some(), "{route}: row lacks {column}");
        }
    }
    // Typed values: numbers are numbers, dates are ISO strings. (Newest
    // first, the row of orders without a date comes first, as PostgreSQL
    // sorts nulls: last ascending, first descending.)
    let newest = server.get("/gold/sales/daily?page_size=1", &[("Authorization", &bearer)]).json();
    assert!(newest["data"][0]["date"].is_null(), "{newest}");
    let daily = server.get("/gold/sales/daily?page_size=1&order_dir=asc", &[("Authorization", &bearer)]).json();
    assert!(daily["data"][0]["total_orders"].is_i64(), "{daily}");
    assert!(daily["data"][0]["total_revenue"].is_f64(), "{daily}");
    let date = daily["data"][0]["date"].as_str().unwrap_or_default();
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-', "{daily}");
}

fn paging_on_a_column_with_ties_neither_repeats_nor_skips_a_row(server: &Server) {
    let bearer = format!("Bearer {}", server.token());
    let first = server
        .get("/gold/sales/by-product?page_size=37&order_by=category&order_dir=asc", &[("Authorization", &bearer)]);
    let total = first.json()["total_rows"].as_u64().unwrap_or(0) as usize;
    assert!(total > 1000, "{total} products");
    let mut seen = std::collections::BTreeSet::new();
    let mut rows = 0;
    for page in 1..=total.div_ceil(1000) {
        let body = server
            .get(
                &format!("/gold/sales/by-product?page={page}&page_size=1000&order_by=category&order_dir=asc"),
                &[("Authorization", &bearer)],
            )
            .json();
        let data = body["data"].as_array().cloned().unwrap_or_default();
        let categories: Vec<&str> = data.iter().map(|r| r["category"].as_str().unwrap_or_default()).collect();
        assert!(categories.windows(2).all(|w| w[0] <= w[1]), "page {page} is not in category order");
        for row in &data {
            seen.insert(row["product_id"].as_i64().unwrap_or(-1));
            rows += 1;
        }
    }
    assert_eq!(rows, total);
    assert_eq!(seen.len(), total, "a row came twice or not at all");
}

fn plain_endpoints_filter_and_answer_csv(server: &Server) {
    let bearer = format!("Bearer {}", server.token());
    let auth = [("Authorization", bearer.as_str())];
    let all = server.get("/gold/customers/metrics?page_size=1000", &auth).json();
    let country = all["data"][0]["country"].as_str().unwrap_or("France").to_owned();
    let filtered = server
        .get(&format!("/gold/customers/metrics?page_size=1000&country={}", country.replace(' ', "%20")), &auth)
        .json();
    let data = filtered["data"].as_array().cloned().unwrap_or_default();
    assert!(!data.is_empty());
    assert!(data.iter().all(|r| r["country"] == country.as_str()), "{filtered}");
    assert!(filtered["total_rows"].as_u64() < all["total_rows"].as_u64());
    let expression = server
        .get("/gold/customers/metrics?filter=total_orders%20ge%202%20and%20not%20(total_spent%20lt%2010)", &auth)
        .json();
    for row in expression["data"].as_array().into_iter().flatten() {
        assert!(row["total_orders"].as_i64() >= Some(2) && row["total_spent"].as_f64() >= Some(10.0), "{row}");
    }
    let csv = server.get("/gold/sales/daily?page_size=5&order_dir=asc", &[auth[0], ("Accept", "text/csv")]);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").is_some_and(|t| t.starts_with("text/csv")));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("date,total_revenue,total_orders,avg_order_value"), "{text}");
}

fn etag_answers_304_and_gzip_is_taken_when_offered(server: &Server) {
    let bearer = format!("Bearer {}", server.token());
    let first = server.get("/gold/sales/daily?page_size=1000", &[("Authorization", &bearer)]);
    let etag = first.header("etag").unwrap_or_else(|| panic!("no ETag")).to_owned();
    let again = server.get("/gold/sales/daily?page_size=1000", &[("Authorization", &bearer), ("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let zipped =
        server.get("/gold/sales/daily?page_size=1000", &[("Authorization", &bearer), ("Accept-Encoding", "gzip")]);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice()).read_to_end(&mut unzipped).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unzipped, first.body);
    let runs = server.authed("/runs").json();
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    assert!(etag.contains(runs["runs"][0]["run_id"].as_str().unwrap_or("?")), "the ETag names the Gold run: {etag}");
}

/// A JWT signed with `secret`, with these header and claims.
fn forged(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> String {
    use jsonwebtoken::{EncodingKey, Header};
    if header["alg"] == "none" {
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        return format!("{}.{}.", b64(&header), b64(&claims));
    }
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn every_data_route_refuses_missing_bad_and_forged_credentials(server: &Server) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = |iss: &str, exp: u64| serde_json::json!({"sub": "analyst", "iss": iss, "iat": now, "exp": exp});
    let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let attacks = [
        ("no credentials", String::new()),
        ("garbage token", "Bearer not.a.token".to_owned()),
        (
            "alg none",
            format!(
                "Bearer {}",
                forged(serde_json::json!({"alg": "none", "typ": "JWT"}), claims("medallion", now + 600), b"")
            ),
        ),
        (
            "wrong signature",
            format!(
                "Bearer {}",
                forged(hs256.clone(), claims("medallion", now + 600), b"another-secret-another-secret-another")
            ),
        ),
        (
            "wrong issuer",
            format!("Bearer {}", forged(hs256.clone(), claims("someone-else", now + 600), SECRET.as_bytes())),
        ),
        ("expired", format!("Bearer {}", forged(hs256.clone(), claims("medallion", now - 10), SECRET.as_bytes()))),
        (
            "wrong Basic password",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("analyst:wrong")),
        ),
        ("unknown Basic user", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("mallory:x"))),
        ("unknown scheme", "Digest abc".to_owned()),
    ];
    for path in [
        "/gold/tables",
        "/gold/sales/daily",
        "/runs",
        "/openapi.json",
        "/odata/",
        "/odata/$metadata",
        "/odata/dm_sales_daily",
    ] {
        for (attack, header) in &attacks {
            let headers: Vec<(&str, &str)> =
                if header.is_empty() { Vec::new() } else { vec![("Authorization", header.as_str())] };
            let answer = server.get(path, &headers);
            assert_eq!(answer.status, 401, "{attack} on {path}: {}", answer.text());
            assert!(answer.header("www-authenticate").is_some_and(|h| h.contains("Basic")), "{attack} on {path}");
            let _ = answer.json();
        }
    }
    // The genuine ones pass: a signed token, and Basic as Power BI sends it.
    let genuine = forged(hs256, claims("medallion", now + 600), SECRET.as_bytes());
    assert_eq!(server.get("/gold/tables", &[("Authorization", &format!("Bearer {genuine}"))]).status, 200);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("analyst:{PASSWORD}"));
    assert_eq!(server.get("/odata/dm_sales_daily", &[("Authorization", &format!("Basic {basic}"))]).status, 200);
    let wrong_login = request(
        &server.address,
        "POST",
        "/auth/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"username=analyst&password=guess",
    );
    assert_eq!(wrong_login.status, 401);
}

fn injection_attempts_get_a_400_with_a_json_error_and_change_nothing(server: &Server) {
    let bearer = format!("Bearer {}", server.token());
    let auth = [("Authorization", bearer.as_str())];
    let attacks = [
        "/gold/sales/daily?order_by=date%3B%20DROP%20TABLE%20dm_sales_daily",
        "/gold/sales/daily?order_by=date%20--",
        "/gold/sales/daily?order_by=%22date%22",
        "/gold/sales/daily?order_by=date'%20OR%20'1'%3D'1",
        "/gold/sales/daily?order_dir=desc%3B%20DELETE",
        "/gold/sales/daily?page_size=1001",
        "/gold/sales/daily?page=0",
        "/gold/sales/daily?page=abc",
        "/gold/sales/daily?filter=date%20eq%20'2024-01-01'%3B%20DROP%20TABLE%20x",
        "/gold/sales/daily?total_orders=1%20OR%201%3D1",
        "/gold/sales/daily?nonsense=1",
        "/odata/dm_sales_daily?$filter=total_orders%20eq%201%3B%20DROP%20TABLE%20x",
        "/odata/dm_sales_daily?$filter=total_orders%20eq%20'1'",
        "/odata/dm_sales_daily?$filter=name%20eq%20'x'%20--",
        "/odata/dm_sales_daily?$filter=contains(date,'1')",
        "/odata/dm_sales_daily?$filter=(((((",
        "/odata/dm_sales_daily?$filter='unterminated",
        "/odata/dm_sales_daily?$select=date,%22total_orders%22",
        "/odata/dm_sales_daily?$select=date;DROP",
        "/odata/dm_sales_daily?$orderby=date%20desc%3B%20DROP%20TABLE%20x",
        "/odata/dm_sales_daily?$orderby=date%20/*%20comment%20*/",
        "/odata/dm_sales_daily?$top=-1",
        "/odata/dm_sales_daily?$skiptoken=AAAA",
        "/odata/dm_sales_daily?$expand=x",
    ];
    for path in attacks {
        let answer = server.get(path, &auth);
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        let body = answer.json();
        let message = if path.starts_with("/odata") { &body["error"]["message"] } else { &body["detail"] };
        assert!(message.as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    let still = server.get("/gold/sales/daily?page_size=1", &auth);
    assert_eq!(still.status, 200, "the tables are intact");
}

fn odata_serves_metadata_entity_sets_counts_filters_and_next_links(server: &Server) {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("analyst:{PASSWORD}")));
    let auth = [
        ("Authorization", basic.as_str()),
        ("OData-MaxVersion", "4.0"),
        ("Accept", "application/json;odata.metadata=minimal"),
    ];
    let service = server.get("/odata/", &auth);
    assert_eq!(service.header("odata-version"), Some("4.0"));
    assert_eq!(service.json()["value"].as_array().map(Vec::len), Some(5));
    let metadata = server.get("/odata/$metadata", &auth).text();
    assert!(metadata.contains("<EntityType Name=\"dm_customer_metrics\">"), "{metadata}");
    assert!(metadata.contains("<PropertyRef Name=\"customer_id\"/>"), "{metadata}");
    assert!(metadata.contains("<Property Name=\"first_order_date\" Type=\"Edm.Date\"/>"), "{metadata}");
    assert!(metadata.contains("<Property Name=\"total_spent\" Type=\"Edm.Double\"/>"), "{metadata}");

    let count: usize = server.get("/odata/dm_customer_metrics/$count", &auth).text().parse().unwrap_or(0);
    assert!(count > 1000);
    // Every row once, through nextLink, with small pages.
    let paged = [auth[0], auth[1], ("Prefer", "odata.maxpagesize=700")];
    let mut url =
        "/odata/dm_customer_metrics?$select=customer_id,total_spent&$orderby=total_spent%20desc&$count=true".to_owned();
    let mut ids = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let page = server.get(&url, &paged);
        assert_eq!(page.status, 200, "{url}: {}", page.text());
        let body = page.json();
        assert_eq!(body["@odata.count"].as_u64(), Some(count as u64));
        for row in body["value"].as_array().into_iter().flatten() {
            assert_eq!(row.as_object().map(|o| o.len()), Some(2), "$select: {row}");
            assert!(ids.insert(row["customer_id"].as_i64().unwrap_or(-1)), "row twice: {row}");
        }
        pages += 1;
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.split_once(&server.address).map(|(_, p)| p.to_owned()).unwrap_or_default(),
            None => break,
        }
    }
    assert_eq!(ids.len(), count);
    assert_eq!(pages, count.div_ceil(700));

    // Filters: dates, text functions, and/or/not; $top and $skip.
    let filtered = server
        .get("/odata/dm_customer_metrics?$filter=first_order_date%20ge%202024-06-01%20and%20(total_orders%20gt%201%20or%20not%20startswith(country,'F'))&$top=50&$skip=5", &auth)
        .json();
    let rows = filtered["value"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty() && rows.len() <= 50, "{filtered}");
    for row in &rows {
        assert!(row["first_order_date"].as_str() >= Some("2024-06-01"), "{row}");
        let country = row["country"].as_str().unwrap_or_default();
        assert!(row["total_orders"].as_i64() > Some(1) || !country.starts_with('F'), "{row}");
    }
    let contains =
        server.get("/odata/dm_sales_by_product?$filter=contains(tolower(category),'e')&$top=5", &auth).json();
    for row in contains["value"].as_array().into_iter().flatten() {
        assert!(row["category"].as_str().is_some_and(|c| c.to_lowercase().contains('e')), "{row}");
    }
}

#[test]
fn the_server_refuses_a_weak_secret_and_an_empty_user_list() {
    let (setup, _) = sqlite_served();
    let weak = setup
        .command(&["serve"], &setup.sqlite())
        .env("MEDALLION_JWT_SECRET", "secret")
        .env("MEDALLION_ANALYST_HASH", password_hash())
        .output();
    let weak = weak.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weak.status.code(), Some(2), "{}", text(&weak).1);
    assert!(text(&weak).1.contains("jwt_secret"), "{}", text(&weak).1);
    let nobody = setup
        .command(&["serve"], &setup.sqlite())
        .env("MEDALLION_JWT_SECRET", SECRET)
        .env_remove("MEDALLION_ANALYST_HASH")
        .output();
    let nobody = nobody.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nobody.status.code(), Some(2), "{}", text(&nobody).1);
    assert!(text(&nobody).1.contains("server.users"), "{}", text(&nobody).1);
}

/// The same Gold loaded into a PostgreSQL server of its own (other tests
/// publish to the shared one), served.
pub(crate) fn postgres_served() -> &'static (Postgres, Server) {
    static SHARED: OnceLock<(Postgres, Server)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (setup, _) = sqlite_served();
        let pg = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        setup.run(&["--from", "gold"], &pg.url);
        let server = Server::start(setup, &pg.url, &[]);
        (pg, server)
    })
}

/// Every check above, as a test on each store.
macro_rules! on_both_stores {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $check() { super::$check(&super::sqlite_served().1) })*
        }
        mod on_postgres {
            $(#[test] fn $check() { super::$check(&super::postgres_served().1) })*
        }
    };
}

on_both_stores!(
    the_reference_routes_answer_with_the_reference_bodies,
    paging_on_a_column_with_ties_neither_repeats_nor_skips_a_row,
    plain_endpoints_filter_and_answer_csv,
    etag_answers_304_and_gzip_is_taken_when_offered,
    every_data_route_refuses_missing_bad_and_forged_credentials,
    injection_attempts_get_a_400_with_a_json_error_and_change_nothing,
    odata_serves_metadata_entity_sets_counts_filters_and_next_links,
    a_third_party_odata_client_reads_every_entity_set_to_its_end,
);

#[test]
fn postgresql_and_sqlite_stores_serve_the_same_answers() {
    let (_, sqlite) = sqlite_served();
    let (_, other) = postgres_served();
    let bearer = format!("Bearer {}", sqlite.token());
    let bearer_pg = format!("Bearer {}", other.token());
    for path in [
        "/gold/sales/daily?page_size=50",
        "/gold/sales/by-product?page=3&page_size=100&order_by=category&order_dir=asc",
        "/gold/customers/metrics?page=2&page_size=1000&order_by=total_spent",
        "/gold/products/reviews-impact?filter=nb_reviews%20gt%200",
        "/gold/stock/performance?page_size=1000&order_by=stock_status&order_dir=asc",
        "/odata/dm_customer_metrics?$filter=first_order_date%20lt%202024-03-01&$orderby=last_order_date%20desc&$top=300",
    ] {
        let a = sqlite.get(path, &[("Authorization", &bearer)]);
        let b = other.get(path, &[("Authorization", &bearer_pg)]);
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        let strip = |mut v: serde_json::Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("@odata.context");
                o.remove("@odata.nextLink");
            }
            v
        };
        assert_eq!(strip(a.json()), strip(b.json()), "{path}");
    }
}

fn a_third_party_odata_client_reads_every_entity_set_to_its_end(server: &Server) {
    let pom = medallion_tests::repo_root().join("tests/odata-client/pom.xml");
    let output = Command::new("mvn")
        .args(["-q", "-f"])
        .arg(&pom)
        .args(["compile", "exec:java"])
        .arg(format!("-Dexec.args=http://{}/odata analyst {PASSWORD}", server.address))
        .output()
        .unwrap_or_else(|e| panic!("cannot run mvn ({e}): scripts/test installs Java 17 and Maven"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "Olingo failed:\n{stdout}\n{stderr}");
    let bearer = format!("Bearer {}", server.token());
    for (_, table) in ROUTES {
        let count = server.get(&format!("/odata/{table}/$count"), &[("Authorization", &bearer)]).text();
        assert!(
            stdout.contains(&format!("READ {table} rows={count} ")),
            "{table}: {count} rows expected in:\n{stdout}"
        );
        assert!(stdout.contains(&format!("METADATA {table} key=")), "{stdout}");
    }
    assert!(stdout.contains("first_order_date:Edm.Date"), "{stdout}");
    assert!(stdout.contains("total_spent:Edm.Double"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("FILTER ")).count(), 3, "{stdout}");
}

#[test]
fn a_newly_published_run_is_served_within_the_poll_interval_with_a_new_etag() {
    let setup = Setup::new("0.002");
    setup.run(&["--ingest-date", "2026-11-24"], &setup.sqlite());
    let server = Server::start(&setup, &setup.sqlite(), &[]);
    let bearer = format!("Bearer {}", server.token());
    let before = server.get("/gold/sales/daily", &[("Authorization", &bearer)]);
    let etag = before.header("etag").unwrap_or_default().to_owned();
    let run = server.get("/health", &[]).json()["gold_run"].clone();
    setup.run(&["--from", "gold"], &setup.sqlite());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = server.get("/health", &[]).json()["gold_run"].clone();
        if now != run {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new run was not picked up");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = server.get("/gold/sales/daily", &[("Authorization", &bearer), ("If-None-Match", &etag)]);
    assert_eq!(after.status, 200, "the old ETag no longer matches");
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(after.json()["data"], before.json()["data"], "same data, new run");
    // The server's columns are files in the lake's scratch folder: the new
    // run's only, the old run's gone with its snapshot; all gone at a stop.
    let scratch = setup.lake.path().join("_scratch");
    let served: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap_or_else(|e| panic!("{}: {e}", scratch.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-serve"))
        .collect();
    let [folder] = &served[..] else { panic!("one server folder in {}: {served:?}", scratch.display()) };
    let snapshots: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snapshots, ["gold-1"], "the first run's files are gone, the second's are there");
    drop(server);
    assert!(!folder.exists(), "the server's folder is removed when it stops");
}

/// Expensive requests (filters, orders of their own) take turns: one is
/// held at a named point while it holds the only turn; another expensive
/// request waits a second, then gets a 503 with `Retry-After`; a page in a
/// stored order is answered meanwhile; the held one then completes. (The
/// pages' speed beside clients that sort is measured by bench/api_sorts.sh.)
#[test]
fn expensive_requests_take_turns_and_pages_are_answered_meanwhile() {
    let setup = Setup::new("0.002");
    setup.run(&["--ingest-date", "2026-11-24"], &setup.sqlite());
    let pause = Pause::at(&["api-expensive"]);
    let server =
        Server::start_with(&setup, &setup.sqlite(), &["--set", "server.expensive_requests_at_once=1"], &pause.env());
    let bearer = format!("Bearer {}", server.token());
    let auth = [("Authorization", bearer.as_str())];
    std::thread::scope(|scope| {
        let held = scope.spawn(|| server.get("/odata/dm_customer_metrics?$orderby=total_spent%20desc&$top=5", &auth));
        pause.reached("api-expensive", Duration::from_secs(60));
        let refused = server.get("/odata/dm_customer_metrics?$orderby=country&$top=5", &auth);
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.header("Retry-After"), Some("1"));
        assert!(refused.json()["error"]["message"].as_str().is_some_and(|m| m.contains("retry")), "{}", refused.text());
        let page = server.get("/odata/dm_sales_daily?$top=5", &auth);
        assert_eq!(page.status, 200, "{}", page.text());
        pause.go("api-expensive");
        let held = held.join().unwrap_or_else(|_| panic!("the held request panicked"));
        assert_eq!(held.status, 200, "{}", held.text());
        assert_eq!(held.json()["value"].as_array().map(Vec::len), Some(5));
    });
}
