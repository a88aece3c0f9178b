//! Helpers the expression families' unit tests share: parse an expression,
//! evaluate it against a document, and compare values or error codes.

use bson::{Bson, Document};

use super::Expr;
use crate::error::{ErrorCode, Result};

/// Parses and evaluates `e` against `d`, an error from either step passed on.
pub(super) fn run(e: Bson, d: Document) -> Result<Option<Bson>> {
    Expr::parse(&e)?.eval(&d)
}

/// (expression, expected value) against `d`.
pub(super) fn check(d: &Document, cases: Vec<(Bson, Bson)>) {
    for (e, want) in cases {
        let got = run(e.clone(), d.clone()).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(got, Some(want), "{e}");
    }
}

/// (expression, expected error code) against `d`, at parse or eval.
pub(super) fn check_err(d: &Document, cases: Vec<(Bson, ErrorCode)>) {
    for (e, code) in cases {
        match run(e.clone(), d.clone()) {
            Err(err) => assert_eq!(err.code, code, "{e}: {}", err.message),
            Ok(v) => panic!("{e}: expected {code:?}, got {v:?}"),
        }
    }
}

/// The value of `e` against `d`, which must parse and evaluate.
pub(super) fn ev(e: Bson, d: Document) -> Option<Bson> {
    run(e.clone(), d).unwrap_or_else(|err| panic!("{e}: {err}"))
}

/// The code and message `e` fails with against `d`, at parse or eval.
pub(super) fn code(e: Bson, d: Document) -> (i32, String) {
    match run(e.clone(), d) {
        Err(err) => (err.code.code(), err.message),
        Ok(v) => panic!("{e} gave {v:?}, not an error"),
    }
}

pub(super) fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse().unwrap())
}
