//! `configureFailPoint` and the `failCommand` fail point, as mongod's test
//! commands (`--setParameter enableTestCommands=1`) give them to drivers'
//! spec tests: make the next commands named fail with a code and labels,
//! close their connection, block for a while, or carry a
//! `writeConcernError` after they applied.
//!
//! Available only when the server was started with `--enable-test-commands`
//! (`ARGON_ENABLE_TEST_COMMANDS`); otherwise `configureFailPoint` is an
//! unknown command (59), as on a mongod without the switch. The operator
//! and the chart never set it.
//!
//! Where it applies, as in mongod (`CommandHelpers::evaluateFailCommandFailPoint`):
//! before the command runs, after its session fields are read but before
//! authorization, retry keys and transactions are looked at, so a failed
//! command changed nothing (a transaction statement it fails does not
//! abort the transaction, a retryable write it fails was not applied);
//! `writeConcernError` alone is added after a write command (or a
//! commit/abort) ran. A hit is counted only when the command matches
//! (`times`/`skip` count matching commands); `configureFailPoint` itself is
//! never failed, and connections of the peer listener (other sidecars,
//! mongod's internal clients) only with `failInternalCommands`.
//!
//! The state is process-wide ([`FailPoints`], in the `Service`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bson::{Bson, Document, doc};
use rand::Rng;

use super::Ctx;
use crate::error::{CommandError, ErrorCode, Result};

/// The only fail point Argon has.
const FAIL_COMMAND: &str = "failCommand";
/// mongod's message for a command failed this way.
const FAILED_MESSAGE: &str = "Failing command via 'failCommand' failpoint";
/// `blockTimeMS` above this is refused: a test that blocks a command for
/// longer than a day is a mistake, and the sleep must stay bounded.
const MAX_BLOCK: Duration = Duration::from_secs(24 * 60 * 60);
/// `failCommands` entries at most (mongod has fewer than 400 commands).
const MAX_FAIL_COMMANDS: usize = 1000;

/// Process-wide fail points and the switch that makes them configurable.
#[derive(Debug, Default)]
pub struct FailPoints {
    enabled: AtomicBool,
    fail_command: Mutex<FailPoint>,
}

#[derive(Debug, Default)]
struct FailPoint {
    mode: Mode,
    data: FailCommand,
    /// Hits since the fail point was last configured (mongod's `timesEntered`).
    times_entered: i64,
}

/// mongod's fail point modes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Mode {
    #[default]
    Off,
    AlwaysOn,
    /// Fires for the next `n` matching commands, then turns off.
    Times(i32),
    /// Lets the next `n` matching commands through, then fires for every one.
    Skip(i32),
    /// Fires for each matching command with this probability.
    Random(f64),
}

/// The `data` of `failCommand`: which commands, and what happens to them.
#[derive(Debug, Default, Clone, PartialEq)]
struct FailCommand {
    commands: Vec<String>,
    /// Every command (`failAllCommands: true`), not only `failCommands`.
    all_commands: bool,
    error_code: Option<i32>,
    /// Replace the labels the server would compute (even with none).
    error_labels: Option<Vec<String>>,
    close_connection: bool,
    /// Appended to the reply of a write command that ran.
    write_concern_error: Option<Document>,
    /// `blockConnection` with `blockTimeMS`.
    block: Option<Duration>,
    app_name: Option<String>,
    fail_internal_commands: bool,
}

/// What a fail point does to a command before it runs.
#[derive(Debug, PartialEq)]
pub enum Before {
    /// Nothing: run the command.
    Run,
    /// Close the connection without a reply.
    CloseConnection,
    /// Answer with this error reply (`ok: 0`, the code, the labels to use).
    Fail(Failure),
}

/// A command failed by the fail point.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: i32,
    /// `Some`: exactly these labels; `None`: the ones the server computes.
    pub labels: Option<Vec<String>>,
}

impl Failure {
    /// The `ok: 0` reply, labels left to the caller.
    pub fn to_document(&self) -> Document {
        doc! {
            "ok": 0.0,
            "errmsg": FAILED_MESSAGE,
            "code": self.code,
            "codeName": crate::error::code_name(self.code),
        }
    }
}

/// Who sends a command, as the fail point's filters see it.
pub struct Caller<'a> {
    /// The command's name as sent.
    pub command: &'a str,
    /// `client.application.name` of the connection's handshake.
    pub app_name: Option<&'a str>,
    /// A connection of the peer listener (another sidecar).
    pub internal: bool,
}

impl FailPoints {
    /// Makes `configureFailPoint` available (`--enable-test-commands`).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FailPoint> {
        // Every change is whole assignments under the lock; a panic
        // elsewhere cannot leave it half written.
        self.fail_command.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What happens to a command before it runs; a block is slept here.
    pub async fn before(&self, caller: &Caller<'_>) -> Before {
        if !self.enabled() {
            return Before::Run;
        }
        let fired = {
            let mut fp = self.lock();
            let acts =
                fp.data.close_connection || fp.data.block.is_some() || fp.data.error_code.is_some();
            (acts && fp.data.applies_to(caller) && fp.hit()).then(|| fp.data.clone())
        };
        let Some(data) = fired else {
            return Before::Run;
        };
        if let Some(block) = data.block {
            tracing::info!(
                command = caller.command,
                ?block,
                "blocking a command via the failCommand fail point"
            );
            tokio::time::sleep(block).await;
        }
        if data.close_connection {
            tracing::info!(
                command = caller.command,
                "closing a connection via the failCommand fail point"
            );
            return Before::CloseConnection;
        }
        match data.error_code {
            Some(code) => Before::Fail(Failure {
                code,
                labels: data.error_labels,
            }),
            None => Before::Run,
        }
    }

    /// The `writeConcernError` (and the labels that replace the computed
    /// ones, if given) to add to the reply of a command that supports a
    /// write concern, after it ran.
    pub fn write_concern_error(
        &self,
        caller: &Caller<'_>,
    ) -> Option<(Document, Option<Vec<String>>)> {
        if !self.enabled() {
            return None;
        }
        let mut fp = self.lock();
        if fp.data.write_concern_error.is_none() || !fp.data.applies_to(caller) || !fp.hit() {
            return None;
        }
        let wce = fp.data.write_concern_error.clone()?;
        Some((wce, fp.data.error_labels.clone()))
    }

    /// Sets the fail point; returns the hits under the previous setting.
    fn configure(&self, mode: Mode, data: FailCommand) -> i64 {
        let mut fp = self.lock();
        let before = fp.times_entered;
        *fp = FailPoint {
            mode,
            data,
            times_entered: 0,
        };
        before
    }
}

impl FailPoint {
    /// One matching command: whether the mode fires for it.
    fn hit(&mut self) -> bool {
        let fires = match self.mode {
            Mode::Off => false,
            Mode::AlwaysOn => true,
            Mode::Times(n) if n <= 0 => {
                self.mode = Mode::Off;
                false
            }
            Mode::Times(n) => {
                let left = n - 1;
                self.mode = if left > 0 {
                    Mode::Times(left)
                } else {
                    Mode::Off
                };
                true
            }
            Mode::Skip(0) => true,
            Mode::Skip(n) => {
                self.mode = Mode::Skip(n - 1);
                false
            }
            Mode::Random(p) => rand::rng().random::<f64>() < p,
        };
        if fires {
            self.times_entered = self.times_entered.saturating_add(1);
        }
        fires
    }
}

impl FailCommand {
    fn applies_to(&self, caller: &Caller<'_>) -> bool {
        if caller.command == "configureFailPoint" {
            return false;
        }
        if caller.internal && !self.fail_internal_commands {
            return false;
        }
        if let Some(app) = &self.app_name
            && caller.app_name != Some(app.as_str())
        {
            return false;
        }
        self.all_commands
            || self
                .commands
                .iter()
                .any(|c| same_command(c, caller.command))
    }
}

/// Names of one command (mongod's aliases): a fail point naming any of
/// them applies to all.
const ALIASES: &[&[&str]] = &[
    &["hello", "isMaster", "ismaster"],
    &["findAndModify", "findandmodify"],
    &["buildInfo", "buildinfo"],
    &["dropIndexes", "deleteIndexes"],
];

fn same_command(named: &str, sent: &str) -> bool {
    named == sent
        || ALIASES
            .iter()
            .any(|group| group.contains(&named) && group.contains(&sent))
}

/// Commands whose reply may carry a `writeConcernError` (mongod's
/// `supportsWriteConcern`): writes (a transaction's statements too, as on
/// mongod), an aggregation that writes (`$out`, `$merge`), and the commit
/// or abort of a transaction.
pub fn supports_write_concern(command: &str, cmd: &Document) -> bool {
    if command == "aggregate" {
        return cmd.get_array("pipeline").is_ok_and(|stages| {
            stages
                .last()
                .and_then(Bson::as_document)
                .is_some_and(|last| last.contains_key("$out") || last.contains_key("$merge"))
        });
    }
    matches!(
        command,
        "commitTransaction"
            | "abortTransaction"
            | "insert"
            | "update"
            | "delete"
            | "findAndModify"
            | "findandmodify"
            | "bulkWrite"
            | "create"
            | "drop"
            | "dropDatabase"
            | "renameCollection"
            | "createIndexes"
            | "dropIndexes"
            | "deleteIndexes"
    )
}

// ---- configureFailPoint -----------------------------------------------------

/// Fields of `data` Argon knows from mongod but does not implement.
const UNSUPPORTED_DATA: &[&str] = &[
    "threadName",
    "namespace",
    "errorExtraInfo",
    "tassert",
    "failLocalClients",
];

/// `{configureFailPoint: "failCommand", mode, data}` on `admin`. Replies
/// with `count`: how many times the previous setting fired.
pub async fn configure_fail_point(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("configureFailPoint")?;
    let name = match ctx.cmd.get("configureFailPoint") {
        Some(Bson::String(s)) => s.as_str(),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'configureFailPoint' is the wrong type '{}', expected type 'string'",
                crate::query::expr::type_name(other)
            )));
        }
        None => return Err(CommandError::failed_to_parse("missing configureFailPoint")),
    };
    for key in ctx.cmd.keys().skip(1) {
        if !matches!(key.as_str(), "mode" | "data")
            && !super::GENERIC_FIELDS.contains(&key.as_str())
        {
            return Err(unknown_field(&format!("configureFailPoint.{key}")));
        }
    }
    if name != FAIL_COMMAND {
        return Err(CommandError::new(
            ErrorCode::FailPointSetFailed,
            format!("{name} not found (Argon has only the {FAIL_COMMAND} fail point)"),
        ));
    }
    let mode = parse_mode(ctx.cmd.get("mode"))?;
    let data = match ctx.cmd.get("data") {
        None => FailCommand::default(),
        Some(Bson::Document(d)) => parse_data(d)?,
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "the 'data' option must be a JSON object",
            ));
        }
    };
    let count = ctx.svc.fail_points.configure(mode, data);
    tracing::warn!(fail_point = name, "set a fail point");
    Ok(doc! {"count": count})
}

fn unknown_field(path: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Location40415,
        format!("BSON field '{path}' is an unknown field."),
    )
}

/// mongod's `FailPoint::parseBSON` for `mode`, with its codes and messages.
fn parse_mode(mode: Option<&Bson>) -> Result<Mode> {
    match mode {
        None => Err(CommandError::new(
            ErrorCode::IllegalOperation,
            "When setting a failpoint, you must supply a 'mode'",
        )),
        Some(Bson::String(s)) => match s.as_str() {
            "off" => Ok(Mode::Off),
            "alwaysOn" => Ok(Mode::AlwaysOn),
            other => Err(CommandError::bad_value(format!("unknown mode: {other}"))),
        },
        Some(Bson::Document(m)) => {
            if m.len() != 1 {
                return Err(CommandError::bad_value(
                    "'mode' must name exactly one of times, skip or activationProbability",
                ));
            }
            if let Some(v) = m.get("times") {
                return Ok(Mode::Times(count_of("times", v)?));
            }
            if let Some(v) = m.get("skip") {
                return Ok(Mode::Skip(count_of("skip", v)?));
            }
            if let Some(v) = m.get("activationProbability") {
                let p = match v {
                    Bson::Double(d) => *d,
                    Bson::Int32(n) => f64::from(*n),
                    Bson::Int64(n) => *n as f64,
                    _ => {
                        return Err(CommandError::type_mismatch(
                            "the 'activationProbability' option to 'mode' must be a double between 0 and 1",
                        ));
                    }
                };
                if !(0.0..=1.0).contains(&p) {
                    return Err(CommandError::bad_value(format!(
                        "activationProbability must be between 0.0 and 1.0; found {p}"
                    )));
                }
                return Ok(Mode::Random(p));
            }
            Err(CommandError::bad_value(
                "'mode' must be one of 'off', 'alwaysOn', '{times:n}', '{skip:n}' or '{activationProbability:p}'",
            ))
        }
        Some(_) => Err(CommandError::type_mismatch(
            "'mode' must be a string or JSON object",
        )),
    }
}

/// `times`/`skip`: a whole number from 0 to i32::MAX, as mongod takes it.
fn count_of(what: &str, v: &Bson) -> Result<i32> {
    let n = whole_number(v).ok_or_else(|| {
        CommandError::type_mismatch(format!("'{what}' option to 'mode' must be a number"))
    })?;
    if n < 0 {
        return Err(CommandError::bad_value(format!(
            "'{what}' option to 'mode' must be positive"
        )));
    }
    i32::try_from(n)
        .map_err(|_| CommandError::bad_value(format!("'{what}' option to 'mode' is too large")))
}

/// An integer, or a double with no fraction (mongod's `bsonExtractIntegerField`).
fn whole_number(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e18 => Some(*d as i64),
        _ => None,
    }
}

fn parse_data(d: &Document) -> Result<FailCommand> {
    let mut out = FailCommand::default();
    let mut block_connection = false;
    let mut block_ms = None;
    for (key, value) in d {
        let path = format!("configureFailPoint.data.{key}");
        match key.as_str() {
            "failCommands" => {
                let Bson::Array(list) = value else {
                    return Err(wrong_type(&path, value, "array"));
                };
                if list.len() > MAX_FAIL_COMMANDS {
                    return Err(CommandError::bad_value(format!(
                        "{path} names {} commands; at most {MAX_FAIL_COMMANDS}",
                        list.len()
                    )));
                }
                for c in list {
                    match c {
                        Bson::String(s) => out.commands.push(s.clone()),
                        other => return Err(wrong_type(&format!("{path}.0"), other, "string")),
                    }
                }
            }
            "failAllCommands" => out.all_commands = boolean(&path, value)?,
            "errorCode" => {
                let n = whole_number(value).ok_or_else(|| wrong_type(&path, value, "int"))?;
                let code = i32::try_from(n)
                    .map_err(|_| CommandError::bad_value(format!("{path} {n} is out of range")))?;
                if code == 0 {
                    return Err(CommandError::bad_value(format!(
                        "{path} must not be 0 (OK): it would fail a command with no error"
                    )));
                }
                out.error_code = Some(code);
            }
            "errorLabels" => {
                let Bson::Array(list) = value else {
                    return Err(wrong_type(&path, value, "array"));
                };
                let mut labels = Vec::with_capacity(list.len().min(16));
                for l in list {
                    match l {
                        Bson::String(s) => labels.push(s.clone()),
                        other => return Err(wrong_type(&format!("{path}.0"), other, "string")),
                    }
                }
                out.error_labels = Some(labels);
            }
            "closeConnection" => out.close_connection = boolean(&path, value)?,
            "writeConcernError" => {
                let Bson::Document(wce) = value else {
                    return Err(wrong_type(&path, value, "object"));
                };
                if !matches!(wce.get("code"), Some(c) if whole_number(c).is_some()) {
                    return Err(CommandError::bad_value(format!(
                        "{path} needs a numeric 'code' (drivers read it)"
                    )));
                }
                out.write_concern_error = Some(wce.clone());
            }
            "blockConnection" => block_connection = boolean(&path, value)?,
            "blockTimeMS" => {
                let ms = whole_number(value).ok_or_else(|| wrong_type(&path, value, "int"))?;
                if ms < 0 {
                    return Err(CommandError::new(
                        ErrorCode::InvalidOptions,
                        "'blockTimeMS' must be non-negative",
                    ));
                }
                let ms = u64::try_from(ms).unwrap_or(u64::MAX);
                if Duration::from_millis(ms) > MAX_BLOCK {
                    return Err(CommandError::bad_value(format!(
                        "'blockTimeMS' {ms} is more than a day"
                    )));
                }
                block_ms = Some(ms);
            }
            "appName" => match value {
                Bson::String(s) => out.app_name = Some(s.clone()),
                other => return Err(wrong_type(&path, other, "string")),
            },
            "failInternalCommands" => out.fail_internal_commands = boolean(&path, value)?,
            k if UNSUPPORTED_DATA.contains(&k) => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!("{path} is not supported by Argon's failCommand fail point"),
                ));
            }
            _ => return Err(unknown_field(&path)),
        }
    }
    match (block_connection, block_ms) {
        (true, Some(ms)) => out.block = Some(Duration::from_millis(ms)),
        (true, None) => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "must specify 'blockTimeMS' when 'blockConnection' is true",
            ));
        }
        (false, _) => {}
    }
    Ok(out)
}

fn boolean(path: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Boolean(b) => Ok(*b),
        other => Err(wrong_type(path, other, "bool")),
    }
}

fn wrong_type(path: &str, v: &Bson, expected: &str) -> CommandError {
    CommandError::type_mismatch(format!(
        "BSON field '{path}' is the wrong type '{}', expected type '{expected}'",
        crate::query::expr::type_name(v)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(command: &str) -> Caller<'_> {
        Caller {
            command,
            app_name: None,
            internal: false,
        }
    }

    fn failing(code: i32) -> FailCommand {
        FailCommand {
            commands: vec!["insert".into()],
            error_code: Some(code),
            ..FailCommand::default()
        }
    }

    #[tokio::test]
    async fn times_counts_only_matching_commands() {
        let fps = FailPoints::default();
        fps.enable();
        fps.configure(Mode::Times(2), failing(91));
        assert_eq!(fps.before(&caller("find")).await, Before::Run);
        assert!(matches!(fps.before(&caller("insert")).await, Before::Fail(f) if f.code == 91));
        assert!(matches!(
            fps.before(&caller("insert")).await,
            Before::Fail(_)
        ));
        assert_eq!(fps.before(&caller("insert")).await, Before::Run);
        // The reply of the next configuration counts the hits.
        assert_eq!(fps.configure(Mode::Off, FailCommand::default()), 2);
    }

    #[tokio::test]
    async fn skip_lets_the_first_through() {
        let fps = FailPoints::default();
        fps.enable();
        fps.configure(Mode::Skip(1), failing(8));
        assert_eq!(fps.before(&caller("insert")).await, Before::Run);
        assert!(matches!(
            fps.before(&caller("insert")).await,
            Before::Fail(_)
        ));
        assert!(matches!(
            fps.before(&caller("insert")).await,
            Before::Fail(_)
        ));
    }

    #[tokio::test]
    async fn filters_and_switch() {
        let fps = FailPoints::default();
        fps.configure(Mode::AlwaysOn, failing(8));
        // Not enabled: nothing fires whatever is configured.
        assert_eq!(fps.before(&caller("insert")).await, Before::Run);
        fps.enable();
        let mut data = failing(8);
        data.app_name = Some("app".into());
        fps.configure(Mode::AlwaysOn, data);
        assert_eq!(fps.before(&caller("insert")).await, Before::Run);
        let with_app = Caller {
            app_name: Some("app"),
            ..caller("insert")
        };
        assert!(matches!(fps.before(&with_app).await, Before::Fail(_)));
        let internal = Caller {
            internal: true,
            ..with_app
        };
        assert_eq!(fps.before(&internal).await, Before::Run);
        assert_eq!(fps.before(&caller("configureFailPoint")).await, Before::Run);
    }

    #[test]
    fn aliases_match() {
        assert!(same_command("isMaster", "hello"));
        assert!(same_command("findAndModify", "findandmodify"));
        assert!(!same_command("insert", "update"));
    }

    #[test]
    fn modes_parse_as_mongod() {
        assert_eq!(
            parse_mode(Some(&Bson::String("off".into()))).unwrap(),
            Mode::Off
        );
        assert_eq!(
            parse_mode(Some(&Bson::Document(doc! {"times": 3}))).unwrap(),
            Mode::Times(3)
        );
        assert_eq!(
            parse_mode(Some(&Bson::Document(doc! {"skip": 2i64}))).unwrap(),
            Mode::Skip(2)
        );
        let code = |m: Option<Bson>| parse_mode(m.as_ref()).unwrap_err().code;
        assert_eq!(code(None), ErrorCode::IllegalOperation);
        assert_eq!(
            code(Some(Bson::String("sometimes".into()))),
            ErrorCode::BadValue
        );
        assert_eq!(
            code(Some(Bson::Document(doc! {"times": -1}))),
            ErrorCode::BadValue
        );
        assert_eq!(
            code(Some(Bson::Document(doc! {"times": i64::MAX}))),
            ErrorCode::BadValue
        );
        assert_eq!(
            code(Some(Bson::Document(doc! {"times": "1"}))),
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            code(Some(Bson::Document(doc! {"activationProbability": 1.5}))),
            ErrorCode::BadValue
        );
        assert_eq!(code(Some(Bson::Int32(1))), ErrorCode::TypeMismatch);
    }
}
