//! The reference API's routes and bodies, unchanged for its clients, with
//! stable paging (every order ends with the key), filters and CSV.

use warp::http::{HeaderMap, StatusCode, header};

use super::query::{self, BadParameter, Filter};
use super::render;
use super::snapshot::{Snapshot, Table};
use super::{ApiError, Reply, State, parameters, truncate};

/// The schema name the reference reports.
const SCHEMA: &str = "datamart";
/// The reference's page size bounds and default.
pub(crate) const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;

/// `GET /health`.
pub(super) fn health(snapshot: &Snapshot) -> Reply {
    let body = serde_json::json!({
        "status": "ok",
        "gold_run": snapshot.run_id,
        "tables": snapshot.tables.len(),
    });
    Reply { cacheable: false, ..Reply::json(body.to_string().into_bytes()) }
}

/// `POST /auth/login` with the OAuth2 password form (`username`, `password`).
pub(super) fn login(state: &State, body: &[u8], source: Option<std::net::IpAddr>) -> warp::http::Response<Vec<u8>> {
    let mut username = None;
    let mut password = None;
    for (name, value) in form_urlencoded::parse(body) {
        match name.as_ref() {
            "username" => username = Some(value.into_owned()),
            "password" => password = Some(value.into_owned()),
            _ => {}
        }
    }
    let (Some(username), Some(password)) = (username, password) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "send the form fields username and password (application/x-www-form-urlencoded)",
        )
        .response(false);
    };
    match state.auth.login(&username, &password, source) {
        Ok((token, seconds)) => {
            let body = serde_json::json!({ "access_token": token, "token_type": "bearer", "expires_in": seconds });
            warp::http::Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-store")
                .body(body.to_string().into_bytes())
                .unwrap_or_default()
        }
        Err(super::auth::Refused::Invalid(why)) => ApiError::new(StatusCode::UNAUTHORIZED, why).response(false),
        Err(super::auth::Refused::Missing) => ApiError::new(StatusCode::UNAUTHORIZED, "no credentials").response(false),
        Err(super::auth::Refused::Busy) => super::busy(super::CHECKS_BUSY, false),
        Err(super::auth::Refused::Throttled(wait)) => super::throttled(wait, false),
    }
}

/// `GET /gold/tables`: every table, its endpoint, rows and columns.
pub(super) fn tables(snapshot: &Snapshot) -> Reply {
    let tables: Vec<serde_json::Value> = snapshot
        .tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "endpoint": t.route,
                "odata": format!("/odata/{}", t.name),
                "description": t.description,
                "rows": t.data.rows(),
                "key": t.key.iter().map(|&k| &t.data.columns[k].name).collect::<Vec<_>>(),
                "columns": t.data.columns.iter().map(|c| serde_json::json!({"name": c.name, "type": c.kind.sql()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = serde_json::json!({ "schema": SCHEMA, "gold_run": snapshot.run_id, "tables": tables });
    Reply::json(body.to_string().into_bytes())
}

/// `GET /runs`: the run log, newest first.
pub(super) fn runs(snapshot: &Snapshot) -> Reply {
    let body = serde_json::json!({ "runs": snapshot.runs });
    Reply { cacheable: false, ..Reply::json(body.to_string().into_bytes()) }
}

/// `GET /gold/...`: one page of a table.
pub(super) fn table(snapshot: &Snapshot, path: &str, query: &str, headers: &HeaderMap) -> Result<Reply, ApiError> {
    let route = path.trim_end_matches('/');
    let table = snapshot.by_route(route).ok_or_else(|| {
        let routes: Vec<&str> = snapshot.tables.iter().filter_map(|t| t.route.as_deref()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no table at {}; the tables are at {}", truncate(route), routes.join(", ")),
        )
    })?;
    let mut params = parameters(query)?;
    let page = number(&mut params, "page", 1, 1, usize::MAX / MAX_PAGE_SIZE)?;
    let page_size = number(&mut params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?;
    let csv = match params.remove("format").as_deref() {
        None => wants_csv(headers),
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(BadParameter::new("format", format!("`{}` is not csv or json", truncate(other))).into());
        }
    };
    let order_by = match params.remove("order_by") {
        Some(name) => table
            .data
            .position(&name)
            .ok_or_else(|| BadParameter::new("order_by", query::unknown_column(table, &name)))?,
        None => table.order_by,
    };
    let descending = match params.remove("order_dir").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(BadParameter::new("order_dir", format!("`{}` is not asc or desc", truncate(other))).into());
        }
    };
    let filter = filters(table, &mut params)?;
    let sort = [(order_by, descending)];
    let order = table.order(&sort);
    let skip = (page - 1) * page_size;
    let rows = query::select(table, &order, filter.as_ref(), 0, skip, page_size);
    let total_rows = query::count(table, filter.as_ref());
    let columns: Vec<usize> = (0..table.data.columns.len()).collect();
    if csv {
        let mut body = Vec::with_capacity(rows.len() * 64);
        render::csv_rows(&mut body, table, &columns, &rows);
        return Ok(Reply::with_type("text/csv; charset=utf-8", body));
    }
    // The reference's keys, in the reference's order.
    let mut body = Vec::with_capacity(256 + rows.len() * 128);
    let mut head = |key: &str, value: serde_json::Value| {
        body.push(if body.is_empty() { b'{' } else { b',' });
        render::json_string(&mut body, key);
        body.push(b':');
        body.extend_from_slice(value.to_string().as_bytes());
    };
    head("table", table.name.as_str().into());
    head("schema", SCHEMA.into());
    head("page", page.into());
    head("page_size", page_size.into());
    head("total_rows", total_rows.into());
    head("total_pages", total_rows.div_ceil(page_size).into());
    head("order_by", table.data.columns[order_by].name.as_str().into());
    head("order_dir", if descending { "desc" } else { "asc" }.into());
    head("columns", table.data.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().into());
    body.extend_from_slice(b",\"data\":");
    render::json_rows(&mut body, table, &columns, &rows);
    body.push(b'}');
    Ok(Reply::json(body))
}

/// Whether the client asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"))
}

/// An integer parameter within bounds.
fn number(
    params: &mut std::collections::HashMap<String, String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.remove(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => {
                Err(BadParameter::new(name, format!("`{}` is not a whole number in {min}..={max}", truncate(&text)))
                    .into())
            }
        },
    }
}

/// The remaining parameters as filters: `filter=` (the OData `$filter`
/// language) and `column=value` (equality, `value` typed by the column).
/// A parameter that is neither is refused, so a typo does not pass silently.
fn filters(table: &Table, params: &mut std::collections::HashMap<String, String>) -> Result<Option<Filter>, ApiError> {
    let mut parts = Vec::new();
    if let Some(text) = params.remove("filter") {
        parts.push(query::parse_filter(&text, table, "filter")?);
    }
    let mut names: Vec<String> = params.keys().cloned().collect();
    names.sort();
    for name in names {
        let value = params.remove(&name).unwrap_or_default();
        if name.starts_with('_') {
            continue; // cache busters (`_=1700000000`)
        }
        let Some(index) = table.data.position(&name) else {
            let known = ["page", "page_size", "order_by", "order_dir", "filter"];
            let message = match medallion_common::suggest::nearest(&truncate(&name), known.iter().copied()) {
                Some(near) => format!("unknown parameter; did you mean `{near}`?"),
                None => format!(
                    "unknown parameter: give page, page_size, order_by, order_dir, filter, or a column name to filter on ({})",
                    query::unknown_column(table, &name)
                ),
            };
            return Err(BadParameter::new(&truncate(&name), message).into());
        };
        let column = &table.data.columns[index];
        let literal = query::parse_literal(&value, column, &name)?;
        parts.push(Filter::Compare { column: index, op: query::Op::Eq, value: literal });
    }
    Ok(parts.into_iter().reduce(|a, b| Filter::And(Box::new(a), Box::new(b))))
}
