//! `/openapi.json` (OpenAPI 3.0, built from the catalog) and `/docs`, a page
//! that lists the routes and sends requests with a token.

use super::Reply;
use super::snapshot::{Snapshot, Table};
use medallion_store::SqlType;

fn schema_type(kind: SqlType) -> serde_json::Value {
    match kind {
        SqlType::Integer => serde_json::json!({"type": "integer", "format": "int64", "nullable": true}),
        SqlType::Double => serde_json::json!({"type": "number", "format": "double", "nullable": true}),
        SqlType::Date => serde_json::json!({"type": "string", "format": "date", "nullable": true}),
        SqlType::Text => serde_json::json!({"type": "string", "nullable": true}),
        SqlType::Boolean => serde_json::json!({"type": "boolean", "nullable": true}),
    }
}

/// Who may call a data route: a Bearer token or Basic credentials.
fn secured() -> serde_json::Value {
    serde_json::json!([{"bearer": []}, {"basic": []}])
}

/// A query parameter's description.
fn param(name: &str, description: &str, schema: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The OpenAPI document.
pub(super) fn openapi(snapshot: &Snapshot) -> Reply {
    let mut paths = fixed_paths();
    let mut schemas = serde_json::Map::new();
    for table in snapshot.tables.iter() {
        let properties: serde_json::Map<String, serde_json::Value> =
            table.data.columns.iter().map(|c| (c.name.clone(), schema_type(c.kind))).collect();
        schemas.insert(table.name.clone(), serde_json::json!({"type": "object", "properties": properties}));
        if let Some(route) = &table.route {
            paths.insert(route.clone(), table_path(table));
        }
    }
    let body = serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "medallion Gold API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The Gold datamart: reference-compatible JSON and CSV endpoints; OData v4 at /odata/ for Power BI."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {"type": "http", "scheme": "basic"}
            },
            "schemas": schemas
        }
    });
    Reply { cacheable: false, ..Reply::json(body.to_string().into_bytes()) }
}

/// The routes every server has: health, login, the table list, the run log.
fn fixed_paths() -> serde_json::Map<String, serde_json::Value> {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/health".to_owned(),
        serde_json::json!({"get": {"summary": "Liveness and the Gold run served", "responses": {"200": {"description": "ok"}}}}),
    );
    paths.insert(
        "/auth/login".to_owned(),
        serde_json::json!({"post": {
            "summary": "A bearer token (OAuth2 password form)",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object",
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                "required": ["username", "password"]}}}},
            "responses": {"200": {"description": "access_token, token_type, expires_in"}, "401": {"description": "wrong credentials"}}
        }}),
    );
    paths.insert(
        "/gold/tables".to_owned(),
        serde_json::json!({"get": {"summary": "The Gold tables, their endpoints and columns", "security": secured(), "responses": {"200": {"description": "ok"}}}}),
    );
    paths.insert(
        "/runs".to_owned(),
        serde_json::json!({"get": {"summary": "The run log, newest first", "security": secured(), "responses": {"200": {"description": "ok"}}}}),
    );
    paths
}

/// A Gold table's reference route: paging, order, filters, its rows.
fn table_path(table: &Table) -> serde_json::Value {
    let names: Vec<&str> = table.data.columns.iter().map(|c| c.name.as_str()).collect();
    let mut parameters = vec![
        param("page", "Page number, from 1", serde_json::json!({"type": "integer", "minimum": 1, "default": 1})),
        param(
            "page_size",
            "Rows per page",
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        ),
        param(
            "order_by",
            "Sort column (ties are broken by the key)",
            serde_json::json!({"type": "string", "enum": names, "default": table.data.columns[table.order_by].name}),
        ),
        param(
            "order_dir",
            "Sort direction",
            serde_json::json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
        ),
        param(
            "format",
            "json, or csv (the same as Accept: text/csv; for links)",
            serde_json::json!({"type": "string", "enum": ["json", "csv"], "default": "json"}),
        ),
        param(
            "filter",
            "An OData $filter expression, e.g. total_orders gt 3 and country eq 'France'",
            serde_json::json!({"type": "string"}),
        ),
    ];
    for column in &table.data.columns {
        parameters.push(param(&column.name, "Rows where the column equals this value", schema_type(column.kind)));
    }
    serde_json::json!({"get": {
        "summary": table.description,
        "security": secured(),
        "parameters": parameters,
        "responses": {
            "200": {"description": "A page: table, schema, page, page_size, total_rows, total_pages, order_by, order_dir, columns, data",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", table.name)}}}}},
                    "text/csv": {"schema": {"type": "string"}}}},
            "400": {"description": "A bad parameter: {\"detail\": ..., \"parameter\": ...}"},
            "401": {"description": "No or bad credentials"}
        }
    }})
}

/// The interactive page.
pub(super) fn page() -> Reply {
    Reply { cacheable: false, ..Reply::with_type("text/html; charset=utf-8", PAGE.as_bytes().to_vec()) }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medallion Gold API</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}
code,pre,input{font-family:ui-monospace,monospace}
.op{border:1px solid #ccc;border-radius:6px;margin:.6rem 0;padding:.6rem}
.get{color:#06c;font-weight:bold}.post{color:#080;font-weight:bold}
pre{background:#f6f6f6;padding:.6rem;max-height:24rem;overflow:auto}
input{margin:.1rem .4rem .1rem 0}
</style></head><body>
<h1>medallion Gold API</h1>
<p>Log in to see the routes and try them. OData for Power BI: <code>/odata/</code>. Machine-readable (with a token): <code>/openapi.json</code>.</p>
<div class="op"><span class="post">POST</span> <code>/auth/login</code><br>
<input id="user" placeholder="username"><input id="pass" type="password" placeholder="password">
<button onclick="login()">Log in</button> <span id="who"></span></div>
<div id="ops"></div>
<script>
let token = "";
async function login() {
  const body = new URLSearchParams({username: user.value, password: pass.value});
  const r = await fetch("/auth/login", {method: "POST", body});
  const j = await r.json();
  token = j.access_token || "";
  who.textContent = token ? "logged in" : (j.detail || "refused");
  if (token) load();
}
async function run(path, form, out) {
  const q = new URLSearchParams();
  for (const i of form.querySelectorAll("input")) if (i.value) q.set(i.name, i.value);
  const url = path + (q.toString() ? "?" + q : "");
  const r = await fetch(url, {headers: token ? {Authorization: "Bearer " + token} : {}});
  const text = await r.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {}
  out.textContent = r.status + " " + url + "\n" + shown;
}
function load() {
ops.textContent = "";
fetch("/openapi.json", {headers: {Authorization: "Bearer " + token}}).then(r => r.json()).then(api => {
  for (const [path, item] of Object.entries(api.paths)) {
    if (!item.get) continue;
    const div = document.createElement("div"); div.className = "op";
    div.innerHTML = `<span class="get">GET</span> <code>${path}</code> ${item.get.summary || ""}<br>`;
    const form = document.createElement("form"); form.onsubmit = e => { e.preventDefault(); run(path, form, out); };
    for (const p of (item.get.parameters || []).slice(0, 5)) {
      const i = document.createElement("input"); i.name = p.name; i.placeholder = p.name; form.appendChild(i);
    }
    const b = document.createElement("button"); b.textContent = "Send"; form.appendChild(b);
    const out = document.createElement("pre");
    div.appendChild(form); div.appendChild(out); ops.appendChild(div);
  }
});
}
</script></body></html>
"#;
