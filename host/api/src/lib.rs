//! `host serve`: the Gold datamart over HTTP (warp). The reference API's
//! routes and bodies (`/health`, `/auth/login`, `/gold/...`), an OData v4
//! service for Power BI (`/odata/`), the run log (`/runs`), OpenAPI
//! (`/openapi.json`, `/docs`), pages for people ([`ui`], `/ui`) and figures
//! for monitoring (`/metrics`).
//!
//! Every data route needs credentials ([`auth`]). Answers come from an
//! in-memory copy of Gold ([`snapshot`]) that follows the store; table and
//! column names come from that catalog, never from request text.

pub mod auth;
mod docs;
mod metrics;
mod odata;
pub mod quarantine;
pub mod query;
mod render;
mod rest;
pub mod snapshot;
pub mod ui;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use self::auth::{Auth, Refused};
use self::query::BadParameter;
use self::snapshot::{Shared, Snapshot};

/// How `host serve` runs.
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The longest a request may take.
    pub request_timeout: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Filtered or sorted requests worked on at once; others wait their
    /// turn for a second, then get a 503.
    pub expensive_at_once: usize,
    /// The pipeline's shape, for the pages.
    pub pipeline: ui::Pipeline,
}

/// The largest request body (a login form).
const MAX_BODY: u64 = 16 * 1024;
/// Bodies smaller than this are not worth compressing.
const GZIP_FROM: usize = 1400;

/// How long an expensive request (a filter, an order of its own) waits for
/// its turn before it gets a 503 with `Retry-After`.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// What every request handler shares.
struct State {
    gold: Shared,
    auth: Auth,
    timeout: Duration,
    /// Turns for expensive work: a core is always left for the pages.
    expensive: Arc<tokio::sync::Semaphore>,
    /// The pipeline's shape, for the pages.
    pipeline: ui::Pipeline,
    /// Requests counted for `/metrics`.
    metrics: Arc<metrics::Metrics>,
}

impl State {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.gold.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Serves until the process is stopped (Ctrl-C stops it gracefully);
/// `ready` is called with the bound address once it accepts connections.
pub fn serve(gold: Shared, auth: Auth, options: ServeOptions, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(options.workers.max(1)).enable_all().build()?;
    let expensive = Arc::new(tokio::sync::Semaphore::new(options.expensive_at_once.max(1)));
    let metrics = Arc::new(metrics::Metrics::default());
    let state = Arc::new(State {
        gold,
        auth,
        timeout: options.request_timeout,
        expensive,
        pipeline: options.pipeline,
        metrics: metrics.clone(),
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        ready(listener.local_addr()?);
        let login = {
            let state = state.clone();
            warp::path!("auth" / "login")
                .and(warp::post())
                .and(warp::body::content_length_limit(MAX_BODY))
                .and(warp::body::bytes())
                .and(warp::addr::remote())
                .then(move |body: Bytes, remote: Option<SocketAddr>| {
                    let state = state.clone();
                    async move {
                        // A password check hashes: off the threads that answer requests.
                        let login = move || rest::login(&state, &body, remote.map(|a| a.ip()));
                        tokio::task::spawn_blocking(login)
                            .await
                            .unwrap_or_else(|_| ApiError::internal("the login failed").response(false))
                    }
                })
        };
        let get = {
            let state = state.clone();
            warp::get()
                .or(warp::head())
                .unify()
                .and(warp::path::full())
                .and(warp::query::raw().or(warp::any().map(String::new)).unify())
                .and(warp::header::headers_cloned())
                .and(warp::addr::remote())
                .then(move |path: warp::path::FullPath, query: String, headers: HeaderMap, remote: Option<SocketAddr>| {
                    answer_get(state.clone(), path, query, headers, remote)
                })
        };
        let routes = login.or(get).unify().recover(rejection).with(warp::log::custom(move |info| {
            metrics.observe(info.path(), info.status().as_u16(), info.elapsed());
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), micros = info.elapsed().as_micros() as u64, "request");
        }));
        warp::serve(routes)
            .incoming(listener)
            .graceful(async {
                // Ctrl-C (SIGINT) raises the process's stop flag (`cancel`).
                while !medallion_common::cancel::requested() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .run()
            .await;
        Ok(())
    })
}

/// Answers a GET from `remote`: a page in a stored order in place; a
/// filter, an order of its own or a password check on a blocking thread
/// (expensive work taking turns), within the time limit.
async fn answer_get(
    state: Arc<State>,
    path: warp::path::FullPath,
    query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
) -> Response<Vec<u8>> {
    let timeout = state.timeout;
    let odata = path.as_str().starts_with("/odata");
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // The pages and the figures are rendered from what the server holds.
    let expensive = !is_light(&query) && !is_page(path.as_str());
    let hashing = state.auth.needs_hashing(authorization);
    // (hyper sends no body in answer to HEAD, and keeps its length.)
    let source = remote.map(|a| a.ip());
    if !expensive && !hashing {
        // A page in a stored order: microseconds, on this thread.
        return route(&state, path.as_str(), &query, &headers, source);
    }
    // Filters and new orders scan or sort a table (bounded
    // work: one pass or one sort), a few at once, each
    // holding its turn until it ends, even past the time
    // limit; a password check hashes (limited by `auth`).
    // Both on a blocking thread; the client waits at most
    // the time limit.
    let turn = if expensive {
        match tokio::time::timeout(QUEUE_WAIT, state.expensive.clone().acquire_owned()).await {
            Ok(Ok(turn)) => Some(turn),
            _ => return busy("too many filtered or sorted requests at once; retry in a second", odata),
        }
    } else {
        None
    };
    let run = move || {
        let _turn = turn;
        if expensive {
            medallion_common::faults::pause_at("api-expensive");
        }
        route(&state, path.as_str(), &query, &headers, source)
    };
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(run)).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => ApiError::internal("the request failed").response(odata),
        Err(_) => busy(&format!("the request took longer than {} s", timeout.as_secs()), odata),
    }
}

/// Routes a GET request from `source`.
fn route(state: &State, path: &str, query: &str, headers: &HeaderMap, source: Option<IpAddr>) -> Response<Vec<u8>> {
    let snapshot = state.snapshot();
    let odata = path == "/odata" || path.starts_with("/odata/");
    let public = matches!(path, "/health" | "/docs" | "/docs/");
    if !public {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Err(refused) = state.auth.check(authorization, source) {
            return unauthorized(refused, odata);
        }
    }
    let data_route = odata || (path.starts_with("/gold/") && path != "/gold/tables");
    if data_route && snapshot.tables.is_empty() {
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Gold store holds no table yet: run `host run pipeline.yaml`; the server picks it up within seconds",
        );
        return error.response(odata);
    }
    let result = match path {
        "/health" => Ok(rest::health(&snapshot)),
        "/openapi.json" => Ok(docs::openapi(&snapshot)),
        "/docs" | "/docs/" => Ok(docs::page()),
        "/gold/tables" => Ok(rest::tables(&snapshot)),
        "/runs" => Ok(rest::runs(&snapshot)),
        "/metrics" => Ok(Reply {
            cacheable: false,
            ..Reply::with_type("text/plain; version=0.0.4; charset=utf-8", state.metrics.render(&snapshot).into_bytes())
        }),
        _ if is_page(path) => ui::handle(&snapshot, &state.pipeline, path, query),
        _ if odata => odata::handle(&snapshot, path, query, headers),
        _ if path.starts_with("/gold/") => rest::table(&snapshot, path, query, headers),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no route {}", truncate(path)))),
    };
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => return error.response(odata),
    };
    finish(reply, &snapshot, path, query, headers, odata)
}

/// A successful answer before its headers are settled.
pub(crate) struct Reply {
    content_type: &'static str,
    body: Vec<u8>,
    /// Whether it depends on the Gold run (then it gets an ETag).
    cacheable: bool,
    extra: Vec<(header::HeaderName, String)>,
}

impl Reply {
    fn json(body: Vec<u8>) -> Self {
        Reply { content_type: "application/json", body, cacheable: true, extra: Vec::new() }
    }

    fn with_type(content_type: &'static str, body: Vec<u8>) -> Self {
        Reply { content_type, body, cacheable: true, extra: Vec::new() }
    }
}

/// ETag from the Gold run and the request, `304` when it matches, gzip
/// when the client takes it.
fn finish(
    reply: Reply,
    snapshot: &Snapshot,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    odata: bool,
) -> Response<Vec<u8>> {
    let mut builder = Response::builder().header(header::CONTENT_TYPE, reply.content_type);
    if odata {
        builder = builder.header("OData-Version", "4.0");
    }
    for (name, value) in &reply.extra {
        builder = builder.header(name, value);
    }
    let accept_encoding = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let gzip = accepts_gzip(accept_encoding) && reply.body.len() >= GZIP_FROM;
    builder = builder.header(header::VARY, "Accept, Accept-Encoding, Authorization, Prefer");
    if reply.cacheable
        && let Some(run) = &snapshot.run_id
    {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (path, query, gzip).hash(&mut hasher);
        // Headers that change the body: the format, the page size, the links.
        for name in [header::ACCEPT, header::HOST, header::HeaderName::from_static("prefer")] {
            headers.get(&name).map(HeaderValue::as_bytes).hash(&mut hasher);
        }
        headers.get("X-Forwarded-Proto").map(HeaderValue::as_bytes).hash(&mut hasher);
        let etag = format!("\"{run}-{:016x}\"", hasher.finish());
        let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|given| {
            given.split(',').any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
        });
        builder = builder.header(header::ETAG, &etag).header(header::CACHE_CONTROL, "private, no-cache");
        if matches {
            return builder.status(StatusCode::NOT_MODIFIED).body(Vec::new()).unwrap_or_default();
        }
    }
    let body = if gzip {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(reply.body.len() / 4), flate2::Compression::fast());
        let _ = encoder.write_all(&reply.body);
        encoder.finish().unwrap_or_default()
    } else {
        reply.body
    };
    builder.status(StatusCode::OK).body(body).unwrap_or_default()
}

/// A request that cannot be answered, with what to do about it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    parameter: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), parameter: None }
    }

    fn internal(message: &str) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The error as JSON: `{"detail": ...}` as the reference (FastAPI)
    /// writes it, or OData's `{"error": {"code", "message", "target"}}`.
    fn response(&self, odata: bool) -> Response<Vec<u8>> {
        let body = if odata {
            serde_json::json!({ "error": {
                "code": self.status.as_u16().to_string(),
                "message": self.message,
                "target": self.parameter,
            }})
        } else {
            serde_json::json!({ "detail": self.message, "parameter": self.parameter })
        };
        let mut builder = Response::builder().status(self.status).header(header::CONTENT_TYPE, "application/json");
        if odata {
            builder = builder.header("OData-Version", "4.0");
        }
        if self.status == StatusCode::UNAUTHORIZED {
            builder = builder
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"medallion\", charset=\"UTF-8\"")
                .header(header::WWW_AUTHENTICATE, "Bearer realm=\"medallion\"");
        }
        builder.body(body.to_string().into_bytes()).unwrap_or_default()
    }
}

impl From<BadParameter> for ApiError {
    fn from(bad: BadParameter) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{}: {}", bad.parameter, bad.message),
            parameter: Some(bad.parameter),
        }
    }
}

fn unauthorized(refused: Refused, odata: bool) -> Response<Vec<u8>> {
    let message = match refused {
        Refused::Missing => {
            "Not authenticated: send a Bearer token from POST /auth/login, or Basic credentials".to_owned()
        }
        Refused::Invalid(why) => why,
        Refused::Busy => return busy(CHECKS_BUSY, odata),
        Refused::Throttled(wait) => return throttled(wait, odata),
    };
    ApiError::new(StatusCode::UNAUTHORIZED, message).response(odata)
}

/// Too many wrong passwords from this address: try again after `wait`.
fn throttled(wait: Duration, odata: bool) -> Response<Vec<u8>> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!("too many wrong passwords from this address; try again in {seconds} s");
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).response(odata);
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// What a 503 says when password checks are all taken.
const CHECKS_BUSY: &str = "too many password checks at once; retry in a second";

/// Too much work at once (password checks, filters and sorts) for longer
/// than a request waits: a 503, try again in a second.
fn busy(message: &str, odata: bool) -> Response<Vec<u8>> {
    let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).response(odata);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// warp's own refusals (no such route, wrong method, body too large) as JSON.
async fn rejection(rejection: warp::Rejection) -> Result<Response<Vec<u8>>, std::convert::Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_owned())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed: the API is read-only, except POST /auth/login".to_owned())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY} bytes"))
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "send a Content-Length".to_owned())
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "the query string cannot be read".to_owned())
    } else {
        (StatusCode::BAD_REQUEST, "bad request".to_owned())
    };
    Ok(ApiError::new(status, message).response(false))
}

/// The query string as name → value; a name given twice is an error.
fn parameters(query: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let name = name.into_owned();
        if out.insert(name.clone(), value.into_owned()).is_some() {
            let error = ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("`{}` is given twice", truncate(&name)),
                parameter: Some(truncate(&name)),
            };
            return Err(error);
        }
    }
    Ok(out)
}

/// Whether `Accept-Encoding` takes gzip (and not with `q=0`).
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (coding == "gzip" || coding == "*") && !refused
    })
}

/// Whether a request only pages (no filter, no order of its own): such a
/// request slices an order already sorted and is answered in place.
fn is_light(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).all(|(name, _)| {
        matches!(
            name.as_ref(),
            "page" | "page_size" | "format" | "$top" | "$skip" | "$skiptoken" | "$select" | "$count" | "$format"
        )
    })
}

/// Whether `path` is a page for people or `/metrics`: rendered from what
/// the server holds, never a scan or a sort of a table.
fn is_page(path: &str) -> bool {
    path == "/metrics" || path == "/ui" || path.starts_with("/ui/")
}

/// A run-log table's quarantine reasons, the most frequent first, at most
/// a given number of them (a plugin chooses its reasons: pages and series
/// are bounded), and what the others add up to.
struct TopReasons<'a> {
    top: Vec<(&'a str, u64)>,
    /// How many reasons were left out, and their rows.
    others: usize,
    other_rows: u64,
}

fn top_reasons(reasons: &serde_json::Map<String, serde_json::Value>, most: usize) -> TopReasons<'_> {
    let mut top: Vec<(&str, u64)> = reasons.iter().map(|(r, n)| (r.as_str(), n.as_u64().unwrap_or(0))).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let others = top.len().saturating_sub(most);
    let other_rows = top.iter().skip(most).map(|(_, n)| n).sum();
    top.truncate(most);
    TopReasons { top, others, other_rows }
}

/// Request text shown in a message, cut short.
fn truncate(text: &str) -> String {
    let mut shown: String = text.chars().take(80).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// What the fuzzing benchmark (bench/fuzz.sh) calls: the OData and REST
/// handling of one request on a snapshot, without a server or
/// authentication. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Answers `GET path?query` on `snapshot`, as the server would after
    /// authentication; returns the status.
    pub fn get(snapshot: &Snapshot, path: &str, query: &str) -> u16 {
        let headers = HeaderMap::new();
        let result = if path.starts_with("/odata") {
            odata::handle(snapshot, path, query, &headers)
        } else {
            rest::table(snapshot, path, query, &headers)
        };
        match result {
            Ok(_) => 200,
            Err(error) => error.status.as_u16(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_unless_refused() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0, identity"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
    }
}
