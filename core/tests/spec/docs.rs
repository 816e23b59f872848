//! The examples in docs/protocol.md decode: the document a Python or Go
//! client relies on cannot drift from the code.

use sundial_core::{
    codec::{decode, Meta},
    protocol::{
        control::{Command, Reply},
        fire::{FireEvent, Watermark},
        run::RunEvent,
        Message, VERSION,
    },
};

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_meta() -> Meta {
    Meta {
        version: Some(VERSION),
        content_type: Some("application/json".into()),
        ..Meta::default()
    }
}

fn decodes<M: Message>(text: &str) {
    if let Err(e) = decode::<M>(&json_meta(), text.as_bytes()) {
        panic!("docs example does not decode as {}: {e}\n{text}", M::KIND);
    }
}

/// Single-line JSON examples starting with `prefix`.
fn lines_starting(doc: &str, prefix: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The ```json block that follows `heading`.
fn block_after(doc: &str, heading: &str) -> String {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading}"));
    let rest = &doc[start..];
    let open = rest
        .find("```json\n")
        .unwrap_or_else(|| panic!("no json block after {heading}"))
        + 8;
    let close = rest[open..]
        .find("```")
        .unwrap_or_else(|| panic!("unclosed block after {heading}"));
    rest[open..open + close].to_string()
}

#[test]
fn command_examples_decode() {
    let doc = protocol_md();
    let commands = lines_starting(&doc, "{\"command\"");
    assert_eq!(
        commands.len(),
        Command::NAMES.len(),
        "one example per command"
    );
    for c in &commands {
        decodes::<Command>(c);
    }
    for name in Command::NAMES {
        assert!(
            commands
                .iter()
                .any(|c| c.contains(&format!("\"command\": \"{name}\""))),
            "no example of {name}"
        );
    }
    for r in lines_starting(&doc, "{\"ok\"") {
        decodes::<Reply>(&r);
    }
}

#[test]
fn event_examples_decode() {
    let doc = protocol_md();
    decodes::<FireEvent>(&block_after(&doc, "## 6. Fire events"));
    decodes::<Watermark>(&block_after(&doc, "## 7. Watermarks"));
    decodes::<RunEvent>(&block_after(&doc, "## 8. Run events").replace('\n', " "));
}

#[test]
fn executor_examples_decode() {
    let doc = protocol_md();
    let executors = lines_starting(&doc, "{\"type\"");
    assert_eq!(executors.len(), 5);
    for e in executors {
        let job = format!(
            r#"{{"command":"upsert","job":{{"id":"a","schedule":"* * * * *","executor":{e}}}}}"#
        );
        decodes::<Command>(&job);
    }
}
