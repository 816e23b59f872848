//! The generated OpenAPI document: well formed, every operation answers
//! with a real schema, every reference resolves, and every JSON example of
//! docs/api.md is valid against the schema of what it shows.

use serde_json::{json, Value};
use sundial_web::api::openapi::document;

/// `#/components/schemas/X` and the like, found anywhere in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// What `pointer` (`#/a/b`) names in `doc`.
fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer.strip_prefix('#')?)
}

/// The JSON schema of a 200 answer of `method path`, with the document's
/// components beside it so its references resolve.
fn answer_schema(doc: &Value, method: &str, path: &str) -> Value {
    let op = &doc["paths"][path][method];
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path}: no 200 JSON schema");
    json!({"$ref": schema["$ref"], "components": doc["components"]})
}

fn validate(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance}");
}

#[test]
fn the_document_is_well_formed_and_every_answer_has_a_schema() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            let ok = &op["responses"]["200"]["content"]["application/json"]["schema"];
            let target = match ok["$ref"].as_str() {
                Some(r) => resolve(&doc, r).unwrap_or_else(|| panic!("{r} does not resolve")),
                None => panic!("{method} {path}: its 200 answer is no named schema: {ok}"),
            };
            // A real schema: properties, or a composition of them.
            assert!(
                target.get("properties").is_some()
                    || target.get("allOf").is_some()
                    || target.get("oneOf").is_some(),
                "{method} {path}: {target}"
            );
            for (status, r) in op["responses"].as_object().expect("responses") {
                if status != "200" {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(operations >= 16, "{operations} operations");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    // Every schema compiles as JSON Schema 2020-12 (what OpenAPI 3.1 uses).
    for name in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        let s = json!({"$ref": format!("#/components/schemas/{name}"), "components": doc["components"]});
        jsonschema::validator_for(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_examples_of_docs_api_md_match_their_schemas() {
    let doc = document();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    // Each ```json block belongs to the endpoint of the heading above it;
    // a run (under "## Runs") is one row of a page.
    let mut heading = String::new();
    let mut block: Option<String> = None;
    let mut checked = 0;
    for line in text.lines() {
        if let Some(b) = block.as_mut() {
            if line.starts_with("```") {
                let example: Value = serde_json::from_str(b).unwrap_or_else(|e| {
                    panic!("the example under {heading:?} is not JSON ({e}): {b}")
                });
                let schema = if heading == "## Runs" {
                    json!({"$ref": "#/components/schemas/RunRow", "components": doc["components"]})
                } else {
                    let (method, path) = endpoint(&heading)
                        .unwrap_or_else(|| panic!("no endpoint in the heading {heading:?}"));
                    answer_schema(&doc, &method, &path)
                };
                validate(&schema, &example, &heading);
                checked += 1;
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
        } else if line.starts_with("```json") {
            block = Some(String::new());
        } else if line.starts_with('#') {
            heading = line.to_string();
        }
    }
    assert!(checked >= 3, "only {checked} examples found");
}

/// `### \`POST /api/v1/jobs/{id}/backfill\`` → ("post", "/api/v1/jobs/{id}/backfill").
fn endpoint(heading: &str) -> Option<(String, String)> {
    let inner = heading.split('`').nth(1)?;
    let (method, path) = inner.split_once(' ')?;
    let path = path.split('?').next()?;
    Some((method.to_ascii_lowercase(), path.to_string()))
}

#[test]
fn the_schemas_hold_what_the_api_sends() {
    let doc = document();
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}"), "components": doc["components"]});
    // A job as docs/protocol.md §4 writes it, and the executor kinds.
    for executor in [
        json!({"type": "shell", "command": ["/bin/echo", "hi"]}),
        json!({"type": "http", "url": "http://127.0.0.1/x", "expect": [200]}),
        json!({"type": "publish", "exchange": "x", "routing_key": "k"}),
        json!({"type": "handler", "name": "reports.daily"}),
        json!({"type": "noop"}),
    ] {
        let job = json!({"id": "backup", "schedule": "0 0 3 * * *", "timezone": "Europe/Paris",
            "timeout": "20m", "labels": {"team": "ops"}, "executor": executor,
            "retry": {"max_attempts": 3, "backoff": ["10s", "1m"]}});
        validate(&schema("JobSpec"), &job, "a job");
    }
    let bad = json!({"id": "x", "schedule": "* * * * * *", "executor": {"type": "shell", "command": ["x"], "colour": 1}});
    let v = jsonschema::validator_for(&schema("JobSpec")).expect("compiles");
    assert!(
        !v.is_valid(&bad),
        "an unknown executor field is refused, as the decoder does"
    );
    let error = json!({"error": {"field": "colour", "message": "unknown query parameter"}});
    validate(&schema("ErrorBody"), &error, "an error");
}
