//! Answers checked against the OpenAPI document the code generates (`prosaas::http::openapi`):
//! every answer [`super::client::TestApi`] receives must be a status its operation documents,
//! with a body its schema allows. Objects are closed: a field the schema does not declare is an
//! error, so a handler cannot grow an undocumented field.
//!
//! The validator covers what utoipa emits: `$ref` to `#/components/schemas` and
//! `#/components/responses`, `allOf`, `oneOf`, `anyOf`, `type` (one or a list), `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `minimum`, `maximum`.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(prosaas::http::openapi()).unwrap())
}

/// The documented operation of `method` on `path` (a query string is ignored): its path
/// template and its object.
fn operation(method: &str, path: &str) -> Option<(&'static str, &'static Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let wanted: Vec<&str> = path.split('/').collect();
    doc()["paths"]
        .as_object()?
        .iter()
        .find_map(|(template, ops)| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == wanted.len()
                && parts
                    .iter()
                    .zip(&wanted)
                    .all(|(t, w)| t == w || (t.starts_with('{') && !w.is_empty()));
            let op = ops.get(method.to_ascii_lowercase())?;
            fits.then_some((template.as_str(), op))
        })
}

/// The operations (`GET /api/jobs/{id}`) whose answers were checked so far, in any test.
static CHECKED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Every documented operation, as `METHOD /template`.
pub fn documented() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (template, ops) in doc()["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            all.insert(format!("{} {template}", method.to_uppercase()));
        }
    }
    all
}

pub fn checked() -> BTreeSet<String> {
    CHECKED.lock().unwrap().clone()
}

/// Checks one answer; panics naming the operation, the status and what does not fit.
pub fn check_answer(method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
    let Some((template, op)) = operation(method, path) else {
        // Not an operation of the API (the 404 and 405 fallbacks): the error shape.
        if content_type.starts_with("application/json") {
            let value: Value = serde_json::from_slice(body).unwrap();
            let schema = serde_json::json!({"$ref": "#/components/schemas/Error"});
            if let Err(e) = validate(&value, &schema, "$") {
                panic!("{method} {path} ({status}), not an API route: {e}\n{value}");
            }
        }
        return;
    };
    let at = format!("{method} {template} → {status}");
    CHECKED
        .lock()
        .unwrap()
        .insert(format!("{method} {template}"));
    let Some(response) = op["responses"].get(status.to_string()) else {
        // A role that does not serve the route answers with the router's own 404.
        let value: Value = serde_json::from_slice(body).unwrap_or_default();
        let not_served = status == 404 && value["detail"] == "no such endpoint";
        assert!(not_served, "{at}: the status is not documented\n{value}");
        return;
    };
    let response = resolve(response);
    let content = &response["content"];
    if body.is_empty() {
        return;
    }
    let Some(media) = content.as_object().and_then(|c| {
        c.iter()
            .find(|(kind, _)| content_type.starts_with(kind.as_str()))
            .map(|(_, m)| m)
    }) else {
        panic!("{at}: answered {content_type:?}, documented {content}");
    };
    if !content_type.starts_with("application/json") {
        return;
    }
    let value: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{at}: the body is not JSON ({e})"));
    if let Err(e) = validate(&value, &media["schema"], "$") {
        panic!("{at}: {e}\n{value}");
    }
}

/// A `$ref`'s target, or the value itself.
fn resolve(v: &Value) -> &Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {r}"));
            resolve(
                doc()
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => v,
    }
}

/// The property names `schema` declares, through `allOf` and `$ref`s; `None` when it leaves
/// objects open (`additionalProperties`, or no `properties` at all).
fn declared(schema: &Value) -> Option<Vec<&str>> {
    let schema = resolve(schema);
    if schema.get("additionalProperties").is_some() {
        return None;
    }
    let mut names: Vec<&str> = Vec::new();
    let mut any = false;
    if let Some(props) = schema["properties"].as_object() {
        any = true;
        names.extend(props.keys().map(String::as_str));
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        any = true;
        names.extend(declared(part)?);
    }
    any.then_some(names)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `v` fits `schema`; the error names where (`$.jobs[0].id`) and why.
pub fn validate(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    fits(v, schema, at, true)
}

/// `closed`: whether undeclared fields are refused here; not inside an `allOf`, whose parts each
/// declare some of the fields (the whole is checked where the `allOf` is).
fn fits(v: &Value, schema: &Value, at: &str, closed: bool) -> Result<(), String> {
    let schema = resolve(schema);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        fits(v, part, at, false)?;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let n = options
                .iter()
                .filter(|o| validate(v, o, at).is_ok())
                .count();
            let ok = if key == "oneOf" { n == 1 } else { n >= 1 };
            if !ok {
                return Err(format!("{at}: fits {n} of the {key} options"));
            }
        }
    }
    fits_scalar(v, schema, at)?;
    if let Value::Array(items) = v
        && let Some(item) = schema.get("items")
    {
        for (i, x) in items.iter().enumerate() {
            validate(x, item, &format!("{at}[{i}]"))?;
        }
    }
    if let Value::Object(fields) = v {
        fits_object(fields, schema, at, closed)?;
    }
    Ok(())
}

/// `type`, `enum`, `minimum` and `maximum`.
fn fits_scalar(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: unreadable type {t}")),
        };
        let actual = type_of(v);
        let ok = allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
        if !ok {
            return Err(format!("{at}: {actual}, the schema allows {allowed:?}"));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {options:?}"));
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            return Err(format!("{at}: {n} under the minimum {}", schema["minimum"]));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            return Err(format!("{at}: {n} over the maximum {}", schema["maximum"]));
        }
    }
    Ok(())
}

/// `required`, `properties`, and fields no property declares.
fn fits_object(
    fields: &serde_json::Map<String, Value>,
    schema: &Value,
    at: &str,
    closed: bool,
) -> Result<(), String> {
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if !fields.contains_key(name) {
            return Err(format!("{at}: the required field {name} is missing"));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            if let Some(x) = fields.get(name) {
                validate(x, sub, &format!("{at}.{name}"))?;
            }
        }
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            if let Some(extra) = fields
                .keys()
                .find(|k| schema["properties"].get(k.as_str()).is_none())
            {
                return Err(format!("{at}: {extra} is not declared"));
            }
        }
        Some(extra) if extra.is_object() => {
            let props = &schema["properties"];
            for (name, x) in fields
                .iter()
                .filter(|(k, _)| props.get(k.as_str()).is_none())
            {
                validate(x, extra, &format!("{at}.{name}"))?;
            }
        }
        _ if !closed => {}
        _ => {
            // Closed unless the schema says otherwise (see the module comment).
            if let Some(names) = declared(schema)
                && let Some(extra) = fields.keys().find(|k| !names.contains(&k.as_str()))
            {
                return Err(format!("{at}: {extra} is not in the schema"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_validator_refuses_what_does_not_fit() {
    let schema = serde_json::json!({"$ref": "#/components/schemas/Enqueued"});
    let ok = serde_json::json!({"job_id": "j", "duplicate": false});
    assert!(validate(&ok, &schema, "$").is_ok());
    for (bad, says) in [
        (serde_json::json!({"job_id": "j"}), "duplicate is missing"),
        (
            serde_json::json!({"job_id": 7, "duplicate": false}),
            "$.job_id: integer",
        ),
        (
            serde_json::json!({"job_id": "j", "duplicate": false, "extra": 1}),
            "extra is not in the schema",
        ),
        (serde_json::json!([]), "array"),
    ] {
        let e = validate(&bad, &schema, "$").unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // Through allOf (JobDetail flattens JobInfo): both halves' fields are declared.
    let detail = serde_json::json!({"$ref": "#/components/schemas/JobDetail"});
    let e = validate(&serde_json::json!({"attempts": 1}), &detail, "$").unwrap_err();
    assert!(e.contains("required field"), "{e}");
}
