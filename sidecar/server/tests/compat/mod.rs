//! `docs/compatibility.md`: every MongoDB 8.0 command, query and update
//! operator, aggregation stage and expression operator (the vendored list
//! `mongodb-8.0.txt`), marked by what the server itself answers.
//!
//! Nothing here says what is supported: an in-process server on an
//! embedded store is asked. A command is supported when it is in the
//! server's command table (`listCommands`), partly when its typed
//! parameters refuse some fields by name (`commands::refused_fields`). An
//! operator or stage is sent in a minimal use and judged by the error: the
//! parser's "unknown" answer (code 2 "unknown operator", 9 "Unknown
//! modifier", 40324 "Unrecognized pipeline stage name", 168 "Unrecognized
//! expression", 15952 "unknown group operator") or a refusal by name (115)
//! marks it refused with that code; any other answer (a result, or an
//! error about the probe's arguments) means the parser knows it.
//!
//! Used by `examples/compatibility.rs` (writes the file) and
//! `tests/compatibility.rs` (fails when the file is stale).

use std::collections::BTreeSet;
use std::sync::Arc;

use argon_sidecar::config::{StoreChoice, open_wal};
use argon_sidecar::metrics::Metrics;
use argon_sidecar::{Service, run};
use bson::{Bson, Document, doc};
use mongodb::{Client, Database};

/// Where the generated file lives, from the crate's directory.
pub const PATH: &str = "../../docs/compatibility.md";

const NAMES: &str = include_str!("mongodb-8.0.txt");

/// How Argon answers one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Supported,
    Partly(String),
    Refused(i32),
}

impl Status {
    fn cell(&self) -> String {
        match self {
            Status::Supported => "supported".into(),
            Status::Partly(what) => format!("partly: {what}"),
            Status::Refused(code) => format!("refused ({code})"),
        }
    }
}

/// MongoDB's codes for server-side JavaScript without an engine
/// (`query::javascript`): a refusal by name.
const JAVASCRIPT: &[i32] = &[6108304, 31264, 31246];

/// A command's reply: the error code and message, or none.
struct Answer {
    code: Option<i32>,
    message: String,
}

impl Answer {
    async fn of(db: &Database, cmd: Document) -> Answer {
        match db.run_command(cmd).await {
            Ok(reply) => {
                // An update's failure is a write error in an `ok: 1` reply.
                let first = reply
                    .get_array("writeErrors")
                    .ok()
                    .and_then(|e| e.first())
                    .and_then(Bson::as_document);
                Answer {
                    code: first.and_then(|e| e.get_i32("code").ok()),
                    message: first
                        .and_then(|e| e.get_str("errmsg").ok())
                        .unwrap_or_default()
                        .to_string(),
                }
            }
            Err(e) => match &*e.kind {
                mongodb::error::ErrorKind::Command(c) => Answer {
                    code: Some(c.code),
                    message: c.message.clone(),
                },
                other => panic!("the probe server failed: {other:?}"),
            },
        }
    }

    /// `None` when the name was recognized; else the code it was refused with.
    fn refusal(&self, unknown: &[(i32, &str)]) -> Option<i32> {
        let code = self.code?;
        if code == 115 || code == 238 || JAVASCRIPT.contains(&code) {
            return Some(code);
        }
        unknown
            .iter()
            .any(|(c, text)| *c == code && self.message.contains(text))
            .then_some(code)
    }
}

fn parse_probe(name: &str, json: &str) -> Document {
    serde_json::from_str::<Document>(json)
        .unwrap_or_else(|e| panic!("the probe of {name} is a JSON document: {e}"))
}

/// The vendored names: `(section, name, probes)`; a name listed again
/// with a probe adds that probe to it.
fn names() -> Vec<(String, String, Vec<String>)> {
    let mut section = String::new();
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in NAMES.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (name, probe) = match line.split_once('\t') {
            Some((n, p)) => (n.to_string(), Some(p.to_string())),
            None => (line.to_string(), None),
        };
        match out.iter_mut().find(|(s, n, _)| *s == section && *n == name) {
            Some((_, _, probes)) => probes.extend(probe),
            None => out.push((section.clone(), name, probe.into_iter().collect())),
        }
    }
    out
}

fn command(registered: &BTreeSet<String>, name: &str) -> Status {
    if !registered.contains(name) {
        return Status::Refused(59);
    }
    if let Some((_, code)) = argon_sidecar::commands::refused_commands()
        .into_iter()
        .find(|(n, _)| *n == name)
    {
        return Status::Refused(code);
    }
    let refused = argon_sidecar::commands::refused_fields(name);
    if refused.is_empty() {
        Status::Supported
    } else {
        Status::Partly(format!("refuses {} (115)", refused.join(", ")))
    }
}

async fn query(db: &Database, name: &str) -> Status {
    let top_level = matches!(
        name,
        "$and" | "$or" | "$nor" | "$expr" | "$where" | "$text" | "$jsonSchema" | "$comment"
    );
    // The shapes of `$geoWithin` and the distances of `$near` exist only
    // inside those operators: asked there.
    let shape = matches!(
        name,
        "$box" | "$center" | "$centerSphere" | "$polygon" | "$geometry"
    );
    let distance = matches!(name, "$maxDistance" | "$minDistance");
    let filter = if top_level {
        doc! {name: []}
    } else if name == "$geometry" {
        doc! {"a": {"$geoWithin": {name: {}}}}
    } else if shape {
        doc! {"a": {"$geoWithin": {name: []}}}
    } else if distance {
        doc! {"a": {"$near": [0, 0], name: 1}}
    } else {
        doc! {"a": {name: []}}
    };
    let answer = Answer::of(db, doc! {"find": "c", "filter": filter}).await;
    match answer.refusal(&[
        (2, "unknown operator"),
        (2, "unknown top level operator"),
        (2, "not supported with provided geometry"),
    ]) {
        Some(code) => Status::Refused(code),
        None => Status::Supported,
    }
}

async fn update(db: &Database, name: &str, probe: Option<&str>) -> Status {
    let u: Document = match probe {
        Some(json) => parse_probe(name, json),
        None => doc! {name: {"a": 1}},
    };
    let answer = Answer::of(
        db,
        doc! {"update": "c", "updates": [
            {"q": {"a": 1}, "u": u, "arrayFilters": if name == "$[<identifier>]" { vec![Bson::Document(doc! {"i": 1})] } else { vec![] }},
        ]},
    )
    .await;
    match answer.refusal(&[(9, "Unknown modifier"), (2, "Unrecognized clause")]) {
        Some(code) => Status::Refused(code),
        None => Status::Supported,
    }
}

async fn stage(db: &Database, name: &str, variants: &[String]) -> Status {
    let unknown = [(40324, "Unrecognized pipeline stage name")];
    let on_collection = Answer::of(
        db,
        doc! {"aggregate": "c", "pipeline": [{name: {}}], "cursor": {}},
    )
    .await
    .refusal(&unknown);
    let Some(code) = on_collection else {
        // Known: each form MongoDB also has (the list's variant probes)
        // is asked too, and a form refused by name makes it partial.
        let mut missing = Vec::new();
        for json in variants {
            let arg = parse_probe(name, json);
            let answer = Answer::of(
                db,
                doc! {"aggregate": "c", "pipeline": [{name: arg.clone()}], "cursor": {}},
            )
            .await;
            if let Some(code) = answer.refusal(&[]) {
                missing.push(format!("`{json}` refused ({code})"));
            }
        }
        return if missing.is_empty() {
            Status::Supported
        } else {
            Status::Partly(missing.join("; "))
        };
    };
    // Stages that make their own documents run in `aggregate: 1`.
    let on_database = Answer::of(
        db,
        doc! {"aggregate": 1, "pipeline": [{name: []}], "cursor": {}},
    )
    .await
    .refusal(&[(73, "is not valid for")]);
    match on_database {
        None => Status::Partly("only in `aggregate: 1`".into()),
        Some(_) => Status::Refused(code),
    }
}

/// MongoDB 8.0's `$meta` names.
const META_NAMES: &[&str] = &[
    "textScore",
    "indexKey",
    "recordId",
    "sortKey",
    "searchScore",
    "searchHighlights",
    "searchScoreDetails",
    "geoNearDistance",
    "geoNearPoint",
    "randVal",
    "vectorSearchScore",
    "searchSequenceToken",
    "score",
    "scoreDetails",
];

async fn expression(db: &Database, name: &str) -> Status {
    // Listed among the expressions, but a `$match` operator in mongod (no
    // expression of that name exists): asked where it is used.
    if name == "$sampleRate" {
        let answer = Answer::of(
            db,
            doc! {"aggregate": "c", "pipeline": [{"$match": {"$sampleRate": 0.5}}], "cursor": {}},
        )
        .await;
        return match answer.refusal(&[(2, "unknown top level operator")]) {
            None => Status::Supported,
            Some(code) => Status::Refused(code),
        };
    }
    let in_project = Answer::of(
        db,
        doc! {"aggregate": "c", "pipeline": [{"$project": {"x": {name: []}}}], "cursor": {}},
    )
    .await
    .refusal(&[(168, "Unrecognized expression")]);
    let in_group = Answer::of(
        db,
        doc! {"aggregate": "c", "pipeline": [{"$group": {"_id": null, "x": {name: []}}}], "cursor": {}},
    )
    .await
    .refusal(&[(15952, "unknown group operator")]);
    if name == "$meta" && in_project.is_none() {
        // `$meta` takes a name: which ones are produced is its support.
        let mut refused = Vec::new();
        for meta in META_NAMES {
            let answer = Answer::of(
                db,
                doc! {"aggregate": "c", "pipeline": [{"$project": {"x": {"$meta": *meta}}}], "cursor": {}},
            )
            .await;
            if answer.refusal(&[]).is_some() {
                refused.push(*meta);
            }
        }
        if !refused.is_empty() {
            // Why, where the reason is Argon's design rather than work left.
            let why = if refused.contains(&"recordId") {
                "; recordId because Argon stores documents by `_id`, with no record id a later read could resolve"
            } else {
                ""
            };
            return Status::Partly(format!("refuses {} (115){why}", refused.join(", ")));
        }
    }
    // Window functions exist only in `$setWindowFields`.
    let in_window = Answer::of(
        db,
        doc! {"aggregate": "c", "pipeline": [{"$setWindowFields": {"sortBy": {"a": 1}, "output": {"x": {name: {}}}}}], "cursor": {}},
    )
    .await
    .refusal(&[(9, "Unrecognized window function")]);
    match (in_project, in_group) {
        (None, _) => Status::Supported,
        (Some(_), None) => Status::Partly("as a `$group` accumulator only".into()),
        (Some(_), Some(_)) if in_window.is_none() => {
            Status::Partly("as a `$setWindowFields` window function only".into())
        }
        // `$accumulator` is no expression (168) and, as an accumulator,
        // server-side JavaScript: its own code says more.
        (Some(_), Some(in_group)) if JAVASCRIPT.contains(&in_group) => Status::Refused(in_group),
        (Some(code), Some(_)) => Status::Refused(code),
    }
}

/// Every name's status, asked of an in-process server.
pub async fn statuses() -> Vec<(String, String, Status)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wal = open_wal(&StoreChoice::Embedded(dir.path().join("wal")), "default")
        .await
        .expect("the embedded store opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let svc = Service::new(wal, "main", Arc::new(Metrics::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, svc, async move {
        let _ = stopped.await;
    }));
    let client = Client::with_uri_str(format!("mongodb://{addr}/?directConnection=true"))
        .await
        .expect("a client");
    let db = client.database("compat");
    db.collection::<Document>("c")
        .insert_one(doc! {"_id": 1, "a": [1, 2]})
        .await
        .expect("a document to probe on");
    let registered: BTreeSet<String> = db
        .run_command(doc! {"listCommands": 1})
        .await
        .expect("listCommands")
        .get_document("commands")
        .expect("commands")
        .keys()
        .cloned()
        .collect();
    let mut out = Vec::new();
    for (section, name, probes) in names() {
        let status = match section.as_str() {
            "command" => command(&registered, &name),
            "query" => query(&db, &name).await,
            "update" => update(&db, &name, probes.first().map(String::as_str)).await,
            "stage" => stage(&db, &name, &probes).await,
            "expression" => expression(&db, &name).await,
            other => panic!("unknown section [{other}] in mongodb-8.0.txt"),
        };
        out.push((section, name, status));
    }
    let _ = stop.send(());
    let _ = server.await;
    out
}

/// The markdown of `docs/compatibility.md`.
pub async fn render() -> String {
    let rows = statuses().await;
    let mut md = String::from(
        "# MongoDB 8.0 compatibility\n\n\
         Generated by `cargo run -p argon-sidecar --example compatibility` (do not edit):\n\
         each name of MongoDB 8.0 (`sidecar/server/tests/compat/mongodb-8.0.txt`) is asked of\n\
         an in-process server, and `tests/compatibility.rs` fails when this file differs from\n\
         what the server answers. *supported*: the server knows it (a command in its table, an\n\
         operator its parser accepts); *partly*: what is missing; *refused (code)*: the error\n\
         code the request fails with, naming it (59 no such command, 115 refused by name, 2 / 9 /\n\
         40324 / 168 an unknown operator, stage or expression). Nothing refused is answered\n\
         wrongly. Collation: every option, with the locales listed in\n\
         `sidecar/server/src/query/collation.rs` (`LOCALES`).\n\n",
    );
    md.push_str("| kind | supported | partly | refused |\n| --- | ---: | ---: | ---: |\n");
    for kind in ["command", "query", "update", "stage", "expression"] {
        let of_kind: Vec<_> = rows.iter().filter(|(s, _, _)| s == kind).collect();
        let count = |f: &dyn Fn(&Status) -> bool| of_kind.iter().filter(|(_, _, s)| f(s)).count();
        md.push_str(&format!(
            "| {kind} | {} | {} | {} |\n",
            count(&|s| *s == Status::Supported),
            count(&|s| matches!(s, Status::Partly(_))),
            count(&|s| matches!(s, Status::Refused(_))),
        ));
    }
    md.push_str("\n| kind | name | Argon |\n| --- | --- | --- |\n");
    for (kind, name, status) in &rows {
        md.push_str(&format!(
            "| {kind} | `{}` | {} |\n",
            name.replace('|', "\\|"),
            status.cell()
        ));
    }
    md
}
