//! Server-side JavaScript, refused by name: Argon has no JavaScript
//! engine, so it answers as a mongod started with
//! `security.javascriptEnabled: false` does, with the same codes and
//! messages (MongoDB 8.0: `JsFunction` for `$where`, `getJsExecWithScope`
//! for `$function` and `$accumulator`, `$_internalJsEmit` for the map step
//! of `mapReduce`). One place, so every parser refuses them alike and
//! `docs/compatibility.md` shows them with these codes.

use crate::error::{CommandError, ErrorCode};

/// The message MongoDB gives for `$function`, `$accumulator` and `mapReduce`.
const NO_ENGINE: &str = "Cannot run server-side javascript without the javascript engine enabled";

/// `$where` in a query (find, count, distinct, a write's filter, `$match`).
pub fn where_operator() -> CommandError {
    CommandError::new(
        ErrorCode::Location6108304,
        "no globalScriptEngine in $where parsing",
    )
}

/// `$function` (an expression) and `$accumulator` (a `$group` accumulator).
pub fn function_operator() -> CommandError {
    CommandError::new(ErrorCode::Location31264, NO_ENGINE)
}

/// The `mapReduce` command.
pub fn map_reduce() -> CommandError {
    CommandError::new(ErrorCode::Location31246, NO_ENGINE)
}
