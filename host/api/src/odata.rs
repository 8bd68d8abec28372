//! OData v4 (JSON, `odata.metadata=minimal`) over the Gold tables: what
//! Power BI's OData feed connector reads natively. Service document,
//! `$metadata` (CSDL with keys and Edm types), one entity set per table with
//! `$select`, `$filter`, `$orderby`, `$top`, `$skip`, `$count`, `/$count`,
//! and server-driven paging through `@odata.nextLink`.
//!
//! Paging is keyset: the next link carries the sort values of the page's
//! last row (`$skiptoken`), and the next page starts just after them by a
//! binary search in the sorted rows, so a deep page costs what the first
//! costs. When a run is published between two pages, the next page starts
//! after the same sort values in the new run: rows whose sort values did not
//! change are neither repeated nor skipped.

use std::collections::HashMap;

use base64::Engine;
use warp::http::{HeaderMap, StatusCode, header};

use super::query::{self, BadParameter, Value};
use super::render;
use super::snapshot::{Snapshot, Table};
use super::{ApiError, Reply, parameters, truncate};
use medallion_store::SqlType;

/// The namespace of the entity types.
const NAMESPACE: &str = "Medallion.Gold";
/// Rows per page unless the client prefers fewer (`Prefer: odata.maxpagesize`).
const PAGE_ROWS: usize = 5000;
/// The most a client may ask for per page.
const MAX_PAGE_ROWS: usize = 20_000;
/// The JSON flavour of every answer.
const JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// Routes `/odata/...`.
pub(super) fn handle(snapshot: &Snapshot, path: &str, query: &str, headers: &HeaderMap) -> Result<Reply, ApiError> {
    check_version(headers)?;
    let rest = path.trim_start_matches("/odata").trim_start_matches('/');
    let base = base_url(headers);
    match rest {
        "" => Ok(service_document(snapshot, &base)),
        "$metadata" => Ok(metadata(snapshot)),
        _ => {
            let (set, count_only) = match rest.strip_suffix("/$count") {
                Some(set) => (set, true),
                None => (rest.trim_end_matches('/'), false),
            };
            let table = snapshot.table(set).ok_or_else(|| {
                let names: Vec<&str> = snapshot.tables.iter().map(|t| t.name.as_str()).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no entity set `{}`; the sets are {}", truncate(set), names.join(", ")),
                )
            })?;
            collection(table, &base, query, headers, count_only)
        }
    }
}

/// Refuses a client that can only speak an older OData.
fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(max) = headers.get("OData-MaxVersion").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    match max.trim().split('.').next().and_then(|major| major.parse::<u32>().ok()) {
        Some(major) if major >= 4 => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("this service speaks OData 4.0; the client accepts at most {}", truncate(max)),
        )),
    }
}

/// `http://host/odata`, from the request's Host (the links must lead back here).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    let scheme = match headers.get("X-Forwarded-Proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/odata")
}

fn service_document(snapshot: &Snapshot, base: &str) -> Reply {
    let sets: Vec<serde_json::Value> = snapshot
        .tables
        .iter()
        .map(|t| serde_json::json!({ "name": t.name, "kind": "EntitySet", "url": t.name }))
        .collect();
    let body = serde_json::json!({ "@odata.context": format!("{base}/$metadata"), "value": sets });
    Reply::with_type(JSON, body.to_string().into_bytes())
}

fn edm_type(kind: SqlType) -> &'static str {
    match kind {
        SqlType::Integer => "Edm.Int64",
        SqlType::Double => "Edm.Double",
        SqlType::Date => "Edm.Date",
        SqlType::Text => "Edm.String",
        SqlType::Boolean => "Edm.Boolean",
    }
}

/// `$metadata`: CSDL XML with one entity type and set per table.
fn metadata(snapshot: &Snapshot) -> Reply {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n<edmx:DataServices>\n",
    );
    xml.push_str(&format!("<Schema Namespace=\"{NAMESPACE}\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n"));
    for table in snapshot.tables.iter() {
        xml.push_str(&format!("<EntityType Name=\"{}\">\n<Key>", escape(&table.name)));
        for &k in &table.key {
            xml.push_str(&format!("<PropertyRef Name=\"{}\"/>", escape(&table.data.columns[k].name)));
        }
        xml.push_str("</Key>\n");
        for (i, column) in table.data.columns.iter().enumerate() {
            // A key column is not nullable, unless the data has a null there
            // (the daily sales' row for orders without a date).
            let has_null = column.has_null();
            let nullable = if table.key.contains(&i) && !has_null { " Nullable=\"false\"" } else { "" };
            xml.push_str(&format!(
                "<Property Name=\"{}\" Type=\"{}\"{nullable}/>\n",
                escape(&column.name),
                edm_type(column.kind)
            ));
        }
        xml.push_str("</EntityType>\n");
    }
    xml.push_str("<EntityContainer Name=\"Gold\">\n");
    for table in snapshot.tables.iter() {
        xml.push_str(&format!("<EntitySet Name=\"{0}\" EntityType=\"{NAMESPACE}.{0}\"/>\n", escape(&table.name)));
    }
    xml.push_str("</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n");
    Reply::with_type("application/xml", xml.into_bytes())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The system query options this service understands.
const OPTIONS: [&str; 8] = ["$select", "$filter", "$orderby", "$top", "$skip", "$count", "$skiptoken", "$format"];

/// An entity set: a page of rows, or its count.
fn collection(
    table: &Table,
    base: &str,
    query: &str,
    headers: &HeaderMap,
    count_only: bool,
) -> Result<Reply, ApiError> {
    let params = parameters(query)?;
    check_options(&params)?;
    let filter = params.get("$filter").map(|f| query::parse_filter(f, table, "$filter")).transpose()?;
    if count_only {
        let count = query::count(table, filter.as_ref());
        return Ok(Reply::with_type("text/plain;charset=utf-8", count.to_string().into_bytes()));
    }
    let columns = select(table, params.get("$select"))?;
    let sort = table.full_sort(&order_by(table, params.get("$orderby"))?);
    let top = params.get("$top").map(|t| whole(t, "$top")).transpose()?;
    let skip = params.get("$skip").map(|t| whole(t, "$skip")).transpose()?.unwrap_or(0);
    let with_count = match params.get("$count").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(BadParameter::new("$count", format!("`{}` is not true or false", truncate(other))).into());
        }
    };
    let (page_rows, preferred) = page_rows(headers);
    let order = table.order(&sort);
    let start = match params.get("$skiptoken") {
        Some(token) => query::position_after(table, &order, &sort, &decode_token(token, table, &sort)?),
        None => 0,
    };
    let take = top.map_or(page_rows, |t| t.min(page_rows));
    let rows = query::select(table, &order, filter.as_ref(), start, skip, take);
    let more = top.is_none_or(|t| t > rows.len()) && rows.len() == take && {
        // Another row after this page?
        let last = *rows.last().unwrap_or(&0);
        let after = query::position_after(table, &order, &sort, &query::row_values(table, &sort, last));
        !query::select(table, &order, filter.as_ref(), after, 0, 1).is_empty()
    };
    let mut body = Vec::with_capacity(256 + rows.len() * 128);
    let mut context = format!("{base}/$metadata#{}", table.name);
    if params.contains_key("$select") {
        let names: Vec<&str> = columns.iter().map(|&c| table.data.columns[c].name.as_str()).collect();
        context.push_str(&format!("({})", names.join(",")));
    }
    body.extend_from_slice(b"{\"@odata.context\":");
    render::json_string(&mut body, &context);
    if with_count {
        body.extend_from_slice(format!(",\"@odata.count\":{}", query::count(table, filter.as_ref())).as_bytes());
    }
    body.extend_from_slice(b",\"value\":");
    render::json_rows(&mut body, table, &columns, &rows);
    if more && let Some(&last) = rows.last() {
        let token = encode_token(&query::row_values(table, &sort, last));
        let top = top.map(|top| top - rows.len());
        body.extend_from_slice(b",\"@odata.nextLink\":");
        render::json_string(&mut body, &next_link(base, table, &params, top, &token));
    }
    body.push(b'}');
    let mut reply = Reply::with_type(JSON, body);
    if preferred {
        reply
            .extra
            .push((header::HeaderName::from_static("preference-applied"), format!("odata.maxpagesize={page_rows}")));
    }
    Ok(reply)
}

/// `Prefer: odata.maxpagesize=N`, within bounds; and whether it was given.
fn page_rows(headers: &HeaderMap) -> (usize, bool) {
    let preferred = headers
        .get_all("Prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize=").and_then(|n| n.trim().parse::<usize>().ok()));
    match preferred {
        Some(n) => (n.clamp(1, MAX_PAGE_ROWS), true),
        None => (PAGE_ROWS, false),
    }
}

fn whole(text: &str, parameter: &str) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .map_err(|_| BadParameter::new(parameter, format!("`{}` is not a whole number", truncate(text))).into())
}

/// `$select=a,b` as column positions (all columns without it).
fn select(table: &Table, given: Option<&String>) -> Result<Vec<usize>, ApiError> {
    let Some(given) = given else {
        return Ok((0..table.data.columns.len()).collect());
    };
    let mut columns = Vec::new();
    for name in given.split(',').map(str::trim) {
        if name == "*" {
            return Ok((0..table.data.columns.len()).collect());
        }
        let index = table
            .data
            .position(name)
            .ok_or_else(|| BadParameter::new("$select", query::unknown_column(table, name)))?;
        if !columns.contains(&index) {
            columns.push(index);
        }
    }
    Ok(columns)
}

/// `$orderby=a desc,b` as (column, descending) pairs.
fn order_by(table: &Table, given: Option<&String>) -> Result<Vec<(usize, bool)>, ApiError> {
    let Some(given) = given else { return Ok(Vec::new()) };
    let mut sort = Vec::new();
    for item in given.split(',').map(str::trim) {
        let mut words = item.split_whitespace();
        let name = words.next().unwrap_or_default();
        let index = table
            .data
            .position(name)
            .ok_or_else(|| BadParameter::new("$orderby", query::unknown_column(table, name)))?;
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(BadParameter::new(
                    "$orderby",
                    format!("`{}`: write a column, then asc or desc", truncate(item)),
                )
                .into());
            }
        };
        if words.next().is_some() {
            return Err(BadParameter::new(
                "$orderby",
                format!("`{}`: write a column, then asc or desc", truncate(item)),
            )
            .into());
        }
        if sort.len() >= 8 {
            return Err(BadParameter::new("$orderby", "at most 8 columns").into());
        }
        sort.push((index, descending));
    }
    Ok(sort)
}

/// The last row's sort values as an opaque URL-safe token. Floats travel
/// as their bits and dates as day numbers, so that every value comes back
/// exactly as it was.
/// Refuses a system option this service does not take, and a `$format`
/// other than JSON.
fn check_options(params: &HashMap<String, String>) -> Result<(), ApiError> {
    for name in params.keys().filter(|n| n.starts_with('$')) {
        if !OPTIONS.contains(&name.as_str()) {
            return Err(BadParameter::new(
                &truncate(name),
                format!("not supported; this service takes {}", OPTIONS.join(", ")),
            )
            .into());
        }
    }
    if let Some(format) = params.get("$format")
        && !format.starts_with("json")
        && !format.starts_with("application/json")
    {
        return Err(BadParameter::new("$format", "only json is served").into());
    }
    Ok(())
}

/// The next page's URL: the same options, what is left of `$top`, and the
/// last row's position.
fn next_link(base: &str, table: &Table, params: &HashMap<String, String>, top: Option<usize>, token: &str) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for name in ["$select", "$filter", "$orderby", "$count", "$format"] {
        if let Some(value) = params.get(name) {
            serializer.append_pair(name, value);
        }
    }
    if let Some(top) = top {
        serializer.append_pair("$top", &top.to_string());
    }
    serializer.append_pair("$skiptoken", token);
    format!("{base}/{}?{}", table.name, serializer.finish())
}

fn encode_token(values: &[Value]) -> String {
    let json: Vec<serde_json::Value> = values
        .iter()
        .map(|v| match v {
            Value::Int(i) => serde_json::json!(i),
            Value::Double(d) => serde_json::json!(d.to_bits()),
            Value::Date(d) => serde_json::json!(d),
            Value::Text(t) => serde_json::json!(t),
            Value::Bool(b) => serde_json::json!(b),
            Value::Null => serde_json::Value::Null,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::Value::Array(json).to_string())
}

fn decode_token(token: &str, table: &Table, sort: &[(usize, bool)]) -> Result<Vec<Value>, ApiError> {
    let bad = || {
        ApiError::from(BadParameter::new(
            "$skiptoken",
            "not a token this service wrote; follow @odata.nextLink as given",
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if values.len() != sort.len() {
        return Err(bad());
    }
    sort.iter()
        .zip(values)
        .map(|(&(column, _), value)| {
            if value.is_null() {
                return Ok(Value::Null);
            }
            Ok(match table.data.columns[column].kind {
                SqlType::Integer => Value::Int(value.as_i64().ok_or_else(bad)?),
                SqlType::Double => Value::Double(f64::from_bits(value.as_u64().ok_or_else(bad)?)),
                SqlType::Date => Value::Date(value.as_i64().and_then(|d| i32::try_from(d).ok()).ok_or_else(bad)?),
                SqlType::Text => Value::Text(value.as_str().ok_or_else(bad)?.to_owned()),
                SqlType::Boolean => Value::Bool(value.as_bool().ok_or_else(bad)?),
            })
        })
        .collect()
}
