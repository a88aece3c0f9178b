//! A structure-aware generator of MongoDB inputs for the query engine, and
//! the check every generated case must pass.
//!
//! Random bytes rarely build a 20,000-deep `$and` or an `$addFields` path
//! with a component of 400,000,000; this generator builds them on purpose.
//! It reads its choices from an [`arbitrary::Unstructured`], so the same
//! code drives the cargo-fuzz target `query` (libFuzzer's bytes) and the
//! test `tests/query_fuzz.rs` (proptest's bytes). It builds documents
//! (nesting around and beyond the 100/200 limits, extreme numbers, huge
//! strings and arrays, paths with large numeric components, empty,
//! `$`-prefixed and dotted names), filters with every query operator the
//! engine parses, update documents with every update operator, projections,
//! sorts, and pipelines with every stage and expression operator.
//!
//! [`check`] parses and applies each of them to the generated documents and
//! returns an error when a result breaks a limit (a document above 16 MiB
//! or nested deeper than 200 levels out of a pipeline or a projection, an
//! update that builds more than one backfill past the document size, an
//! expression value above the built-value limit); a panic is a failure too.
#![allow(dead_code)]

use arbitrary::Unstructured;
use argon_sidecar::limits::{
    self, MAX_ARRAY_BACKFILL, MAX_BUILT_VALUE_SIZE, MAX_DOCUMENT_SIZE, MAX_MESSAGE_DOCUMENT_SIZE,
};
use argon_sidecar::query::aggregate::{InMemory, Pipeline};
use argon_sidecar::query::expr::Expr;
use argon_sidecar::query::update::upsert_document;
use argon_sidecar::query::{Filter, Projection, SortSpec, UpdateSpec};
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp};

/// Nesting depths that sit on and around the limits (100 stored levels,
/// 100 query levels, 200 expression / message levels).
const DEPTHS: &[usize] = &[
    2, 20, 98, 99, 100, 101, 102, 150, 198, 199, 200, 201, 202, 230,
];

/// Numeric path components: indexes, the backfill limit and past it,
/// integers that overflow i32/i64/u64, and things that are not indexes.
const NUMERIC_COMPONENTS: &[&str] = &[
    "0",
    "1",
    "2",
    "10",
    "1499999",
    "1500000",
    "1500001",
    "1500002",
    "400000000",
    "2147483647",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "18446744073709551616",
    "-1",
    "01",
    "+1",
    "1e3",
];

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "x",
    "s",
    "n",
    "arr",
    "_id",
    "",
    "$",
    "$a",
    "$x",
    "$$ROOT",
    "a.b",
    "a.0",
    ".",
    "0",
    "1",
    "2",
    "10",
    "400000000",
    "é",
    " ",
    "count",
    "$each",
    "$slice",
];

const PLAIN_COMPONENTS: &[&str] = &["a", "b", "c", "arr", "s", "n", "_id", "x", "é"];

const ODD_COMPONENTS: &[&str] = &["", "$", "$[]", "$[e]", "$x", "$$ROOT", " "];

const QUERY_OPS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$regex",
    "$options",
    "$all",
    "$elemMatch",
    "$size",
    "$mod",
    "$not",
    "$comment",
    "$bitsAllSet",
    "$bitsAnyClear",
    // Known to MongoDB, not to this engine, or not at all:
    "$where",
    "$text",
    "$geoWithin",
    "$foo",
];

const TOP_LEVEL: &[&str] = &[
    "$and",
    "$or",
    "$nor",
    "$expr",
    "$comment",
    "$where",
    "$text",
    "$jsonSchema",
    "$foo",
];

const UPDATE_OPS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
    "$currentDate",
    "$setOnInsert",
    "$bit",
    "$foo",
];

/// Every expression operator `query::expr` knows, and some it does not.
const EXPR_OPS: &[&str] = &[
    "$add",
    "$subtract",
    "$multiply",
    "$divide",
    "$mod",
    "$abs",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$cmp",
    "$and",
    "$or",
    "$not",
    "$cond",
    "$ifNull",
    "$concat",
    "$toUpper",
    "$toLower",
    "$size",
    "$in",
    "$arrayElemAt",
    "$type",
    "$toString",
    "$max",
    "$min",
    "$sum",
    "$avg",
    "$first",
    "$last",
    "$strLenCP",
    "$substrCP",
    "$split",
    "$isArray",
    "$concatArrays",
    "$range",
    "$mergeObjects",
    "$stdDevSamp",
    "$acos",
    "$atanh",
    "$sin",
    "$atan2",
    "$exp",
    "$ln",
    "$log",
    "$sqrt",
    "$pow",
    "$ceil",
    "$round",
    "$trunc",
    "$bitAnd",
    "$bitNot",
    "$bitXor",
    "$rand",
    "$convert",
    "$toInt",
    "$toLong",
    "$toDouble",
    "$toDecimal",
    "$toDate",
    "$toObjectId",
    "$toUUID",
    "$toBool",
    "$isNumber",
    "$bsonSize",
    "$binarySize",
    "$tsSecond",
    "$toHashedIndexKey",
    "$maxN",
    "$median",
    "$literal",
    "$let",
    "$map",
    "$nope",
];

const STAGES: &[&str] = &[
    "$match",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$sort",
    "$limit",
    "$skip",
    "$count",
    "$group",
    "$unwind",
    "$replaceRoot",
    "$replaceWith",
    "$sortByCount",
    "$lookup",
    "$out",
    "$merge",
    "$facet",
    "$bucket",
    "$bucketAuto",
    "$graphLookup",
    "$redact",
    "$setWindowFields",
    "$densify",
    "$fill",
    "$geoNear",
    "$unionWith",
    "$nope",
];

const ACCUMULATORS: &[&str] = &[
    "$sum",
    "$avg",
    "$min",
    "$max",
    "$first",
    "$last",
    "$push",
    "$addToSet",
    "$count",
    "$stdDevPop",
    "$stdDevSamp",
    "$mergeObjects",
    "$firstN",
    "$lastN",
    "$minN",
    "$maxN",
    "$topN",
    "$bottomN",
    "$top",
    "$bottom",
    "$percentile",
    "$median",
];

const TYPE_NAMES: &[&str] = &[
    "double",
    "string",
    "object",
    "array",
    "number",
    "int",
    "long",
    "decimal",
    "bool",
    "null",
    "date",
    "timestamp",
    "regex",
    "missing",
    "nope",
];

const REGEXES: &[&str] = &[
    "",
    "a",
    "^a",
    "a.b",
    ".*",
    "(?i)x",
    "[",
    "(",
    "\\",
    "a{2,1}",
    "(a{100}){100}",
    "a{4294967295}",
    "\\p{L}+",
    "(?P<n>a)",
    "^$",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "x",
    "é",
    "$a",
    "$arr",
    "$a.b",
    "$arr.0",
    "$$ROOT",
    "$$CURRENT.a",
    "$$nope",
    "$",
    "date",
    "timestamp",
    "a\u{0}b",
    "ǅ",
    "ß",
];

/// Sizes of large strings and arrays: around 1 MiB and up to past 16 MiB.
const BIG_BYTES: &[usize] = &[
    1 << 10,
    1 << 20,
    4 << 20,
    (16 << 20) - 64,
    16 << 20,
    (16 << 20) + 1,
];

/// A generated case: documents and what to run over them.
#[derive(Debug)]
pub struct Case {
    /// Documents as the server would have stored them (the generator may
    /// build more; [`check`] keeps those a write would have accepted).
    pub docs: Vec<Document>,
    pub filter: Document,
    pub update: Bson,
    pub projection: Document,
    pub sort: Document,
    pub pipeline: Vec<Bson>,
    pub expr: Bson,
}

/// The generator: choices come from `u`; `fuel` bounds how much it builds
/// (each value built spends some), so exhausted input ends in small values.
pub struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    fuel: usize,
}

impl<'a, 'b> Gen<'a, 'b> {
    pub fn new(u: &'b mut Unstructured<'a>) -> Self {
        Gen { u, fuel: 400 }
    }

    fn n(&mut self, max: usize) -> usize {
        self.u.int_in_range(0..=max).unwrap_or(0)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.n(xs.len() - 1)]
    }

    fn chance(&mut self, one_in: u32) -> bool {
        self.u.ratio(1, one_in).unwrap_or(false)
    }

    fn spend(&mut self) -> bool {
        if self.fuel == 0 {
            return false;
        }
        self.fuel -= 1;
        true
    }

    // ---- names, paths, scalars -------------------------------------------

    pub fn name(&mut self) -> String {
        if self.chance(4) {
            self.pick(NUMERIC_COMPONENTS).to_owned()
        } else {
            self.pick(NAMES).to_owned()
        }
    }

    fn component(&mut self) -> &'static str {
        match self.n(9) {
            0..=5 => self.pick(PLAIN_COMPONENTS),
            6..=7 => self.pick(NUMERIC_COMPONENTS),
            8 => self.pick(ODD_COMPONENTS),
            _ => "0",
        }
    }

    /// A dotted path: usually short, sometimes at and past the 100 / 200
    /// component limits, with numeric components that index, pad or
    /// overflow.
    pub fn path(&mut self) -> String {
        if self.chance(16) {
            let n = self.pick(&[99usize, 100, 101, 199, 200, 201, 1000]);
            let c = self.pick(&["a", "0", "1"]);
            return vec![c; n].join(".");
        }
        let n = 1 + self.n(3);
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            // Paths start with a plain name more often than not.
            parts.push(if i == 0 && !self.chance(5) {
                self.pick(PLAIN_COMPONENTS)
            } else {
                self.component()
            });
        }
        parts.join(".")
    }

    pub fn double(&mut self) -> f64 {
        match self.n(14) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => f64::MAX,
            5 => f64::MIN,
            6 => f64::MIN_POSITIVE,
            7 => 5e-324,
            8 => 9.223372036854776e18,
            9 => -9.223372036854776e18,
            10 => 9007199254740992.0,
            11 => 0.5,
            12 => 1.0,
            13 => -1.0,
            _ => self.u.arbitrary().unwrap_or(0.0),
        }
    }

    fn decimal(&mut self) -> Decimal128 {
        // Little-endian IEEE 754-2008 decimal128 (BID): the top byte
        // holds sign and combination field.
        let mut b = [0u8; 16];
        match self.n(6) {
            0 => b[15] = 0x7c, // NaN
            1 => b[15] = 0x7e, // sNaN
            2 => b[15] = 0x78, // +Infinity
            3 => b[15] = 0xf8, // -Infinity
            4 => {
                b[0] = 1; // 1E+0
                b[14] = 0x40;
                b[15] = 0x30;
            }
            5 => {
                b = [0xff; 16]; // largest coefficient bits, odd exponent
                b[15] = 0x5f;
            }
            _ => {
                for x in &mut b {
                    *x = self.u.arbitrary().unwrap_or(0);
                }
            }
        }
        Decimal128::from_bytes(b)
    }

    pub fn int64(&mut self) -> i64 {
        match self.n(8) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => i64::MAX - 1,
            3 => 1 << 53,
            4 => (1 << 53) + 1,
            5 => i32::MAX as i64 + 1,
            6 => -1,
            7 => 0,
            _ => self.u.arbitrary().unwrap_or(0),
        }
    }

    pub fn int32(&mut self) -> i32 {
        match self.n(7) {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => -1,
            3 => 0,
            4 => 1,
            5 => 2,
            6 => 1_500_001,
            _ => self.u.arbitrary().unwrap_or(0),
        }
    }

    pub fn number(&mut self) -> Bson {
        match self.n(3) {
            0 => Bson::Int32(self.int32()),
            1 => Bson::Int64(self.int64()),
            2 => Bson::Double(self.double()),
            _ => Bson::Decimal128(self.decimal()),
        }
    }

    fn string(&mut self) -> String {
        match self.n(7) {
            0 if self.chance(4) => {
                let n = self.pick(BIG_BYTES);
                "x".repeat(n)
            }
            1 => self.u.arbitrary::<String>().unwrap_or_default(),
            _ => self.pick(STRINGS).to_owned(),
        }
    }

    fn regex(&mut self) -> Bson {
        let pattern = self.pick(REGEXES).to_owned();
        let options = self.pick(&["", "i", "m", "x", "s", "imsx", "q"]).to_owned();
        match (pattern.try_into(), options.try_into()) {
            (Ok(pattern), Ok(options)) => Bson::RegularExpression(Regex { pattern, options }),
            _ => Bson::Null,
        }
    }

    pub fn scalar(&mut self) -> Bson {
        match self.n(19) {
            0..=3 => self.number(),
            4..=6 => Bson::String(self.string()),
            7 => Bson::Boolean(self.chance(2)),
            8 => Bson::Null,
            9 => Bson::Undefined,
            10 => Bson::MinKey,
            11 => Bson::MaxKey,
            12 => Bson::ObjectId(bson::oid::ObjectId::from_bytes(
                self.u.arbitrary().unwrap_or([0; 12]),
            )),
            13 => Bson::DateTime(bson::DateTime::from_millis(self.int64())),
            14 => Bson::Timestamp(Timestamp {
                time: self.u.arbitrary().unwrap_or(0),
                increment: self.u.arbitrary().unwrap_or(0),
            }),
            15 => Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: self.u.arbitrary().unwrap_or_default(),
            }),
            16 => self.regex(),
            17 => Bson::JavaScriptCode("x".into()),
            18 => Bson::Symbol(self.pick(STRINGS).to_owned()),
            _ => Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: "y".into(),
                scope: bson::doc! {"q": 1},
            }),
        }
    }

    // ---- documents and values ----------------------------------------------

    /// `inner` wrapped in `levels` documents or arrays, built without
    /// recursion.
    fn nest(&mut self, levels: usize, inner: Bson) -> Bson {
        let arrays = self.n(2);
        let name = self.pick(&["a", "b", "0", "$and"]).to_owned();
        let mut v = inner;
        for i in 0..levels {
            let as_array = match arrays {
                0 => false,
                1 => true,
                _ => i % 2 == 0,
            };
            v = if as_array {
                Bson::Array(vec![v])
            } else {
                let mut d = Document::new();
                d.insert(name.clone(), v);
                Bson::Document(d)
            };
        }
        v
    }

    pub fn value(&mut self, depth: usize) -> Bson {
        if !self.spend() || depth > 6 {
            return self.scalar();
        }
        match self.n(15) {
            0..=6 => self.scalar(),
            7..=9 => Bson::Document(self.document(depth + 1)),
            10..=11 => {
                let n = self.n(4);
                Bson::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            // Arrays of arrays.
            12 => {
                let n = 1 + self.n(2);
                Bson::Array(
                    (0..n)
                        .map(|_| Bson::Array(vec![self.value(depth + 2), self.scalar()]))
                        .collect(),
                )
            }
            13 => {
                let levels = self.pick(DEPTHS);
                let inner = self.scalar();
                self.nest(levels, inner)
            }
            14 if self.chance(2) => self.numbers(),
            14 if self.chance(4) => {
                // A long array.
                let n = self.pick(&[1000usize, 20_000, 200_000]);
                let v = self.scalar_small();
                Bson::Array(vec![v; n])
            }
            _ => self.scalar(),
        }
    }

    /// An array of extreme numbers of every numeric type, long enough that
    /// sorting it goes past insertion sort.
    pub fn numbers(&mut self) -> Bson {
        let n = 17 + self.n(47);
        let near = self.chance(2);
        Bson::Array((0..n).map(|_| self.number_near(near)).collect())
    }

    /// A number; if `near`, one of those that differ as integers but not
    /// as doubles (2^53, 2^53 + 1, 2^63 - 1 ...), where a comparison that
    /// goes through f64 stops being an order.
    fn number_near(&mut self, near: bool) -> Bson {
        if !near {
            return self.number();
        }
        match self.n(7) {
            0 => Bson::Int64(1 << 53),
            1 => Bson::Int64((1 << 53) + 1),
            2 => Bson::Double(9007199254740992.0),
            3 => Bson::Int64(i64::MAX),
            4 => Bson::Int64(i64::MAX - 1),
            5 => Bson::Double(9.223372036854776e18),
            6 => Bson::Decimal128(self.decimal()),
            _ => Bson::Int32(0),
        }
    }

    fn scalar_small(&mut self) -> Bson {
        match self.n(3) {
            0 => Bson::Int32(self.int32()),
            1 => Bson::Double(self.double()),
            2 => Bson::Null,
            _ => Bson::String(self.pick(STRINGS).to_owned()),
        }
    }

    pub fn document(&mut self, depth: usize) -> Document {
        let mut d = Document::new();
        let n = self.n(5);
        for _ in 0..n {
            let k = self.name();
            let v = self.value(depth);
            d.insert(k, v);
        }
        d
    }

    /// A stored-looking document: an `_id` and fields a-d, s, n, arr with
    /// varied values.
    pub fn stored(&mut self) -> Document {
        let mut d = Document::new();
        if !self.chance(8) {
            d.insert("_id", self.scalar_small());
        }
        if self.chance(4) {
            // An array of empty arrays (or documents) for updates to pad.
            let n = self.pick(&[2usize, 12, 100]);
            let e = if self.chance(2) {
                Bson::Array(Vec::new())
            } else {
                Bson::Array(vec![Bson::Array(Vec::new())])
            };
            d.insert("arr", Bson::Array(vec![e; n]));
        }
        for k in ["a", "b", "arr", "s", "n"] {
            if self.chance(3) || d.contains_key(k) {
                continue;
            }
            let v = self.value(1);
            d.insert(k, v);
        }
        let more = self.document(1);
        for (k, v) in more {
            d.insert(k, v);
        }
        d
    }

    // ---- filters -----------------------------------------------------------

    pub fn filter(&mut self, depth: usize) -> Document {
        if self.chance(12) {
            return self.deep_filter();
        }
        let mut d = Document::new();
        let n = if depth == 0 { self.n(3) } else { 1 + self.n(2) };
        for _ in 0..n {
            if !self.spend() || depth > 5 || !self.chance(3) {
                let p = self.path();
                let v = self.field_condition(depth);
                d.insert(p, v);
            } else {
                let op = self.pick(TOP_LEVEL);
                let v = match op {
                    "$and" | "$or" | "$nor" => {
                        let k = self.n(3);
                        Bson::Array(
                            (0..k)
                                .map(|_| Bson::Document(self.filter(depth + 1)))
                                .collect(),
                        )
                    }
                    "$expr" => self.expr(0),
                    _ => self.value(3),
                };
                d.insert(op, v);
            }
        }
        d
    }

    /// A filter nested to a depth around the query tree limit, or far past
    /// it ($and / $or / $nor / $elemMatch / $not chains).
    fn deep_filter(&mut self) -> Document {
        let levels = if self.chance(3) {
            self.pick(&[300usize, 1000])
        } else {
            self.pick(DEPTHS)
        };
        let kind = self.n(4);
        let mut f = bson::doc! {"a": 1};
        for _ in 0..levels {
            f = match kind {
                0 => bson::doc! {"$and": [f]},
                1 => bson::doc! {"$or": [f, {"b": 1}]},
                2 => bson::doc! {"$nor": [f]},
                3 => bson::doc! {"a": {"$elemMatch": f}},
                _ => bson::doc! {"a": {"$not": {"$elemMatch": f}}},
            };
        }
        f
    }

    fn field_condition(&mut self, depth: usize) -> Bson {
        match self.n(5) {
            0 => self.value(2),
            1 => self.regex(),
            _ => {
                let mut ops = Document::new();
                let n = 1 + self.n(2);
                for _ in 0..n {
                    let op = self.pick(QUERY_OPS);
                    let arg = self.query_operand(op, depth);
                    ops.insert(op, arg);
                }
                Bson::Document(ops)
            }
        }
    }

    fn query_operand(&mut self, op: &str, depth: usize) -> Bson {
        if self.chance(10) {
            return self.value(3);
        }
        match op {
            "$in" | "$nin" => {
                let n = self.n(4);
                Bson::Array(
                    (0..n)
                        .map(|_| {
                            if self.chance(4) {
                                self.regex()
                            } else {
                                self.value(3)
                            }
                        })
                        .collect(),
                )
            }
            "$type" => match self.n(3) {
                0 => Bson::String(self.pick(TYPE_NAMES).to_owned()),
                1 => self.number(),
                _ => Bson::Array(vec![
                    Bson::String(self.pick(TYPE_NAMES).to_owned()),
                    self.number(),
                ]),
            },
            "$regex" => match self.n(2) {
                0 => Bson::String(self.pick(REGEXES).to_owned()),
                _ => self.regex(),
            },
            "$options" => Bson::String(self.pick(&["i", "m", "x", "s", "z", ""]).to_owned()),
            // Positions up to 2^31 - 1, bitmasks, and the numbers around them.
            "$bitsAllSet" | "$bitsAnyClear" => match self.n(3) {
                0 => self.number(),
                1 => Bson::Binary(bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: vec![0xff; self.n(20)],
                }),
                _ => {
                    let n = self.n(5);
                    Bson::Array((0..n).map(|_| self.number()).collect())
                }
            },
            "$all" => {
                let n = self.n(3);
                Bson::Array(
                    (0..n)
                        .map(|_| {
                            if self.chance(3) && depth < 6 {
                                Bson::Document(bson::doc! {"$elemMatch": self.filter(depth + 1)})
                            } else {
                                self.value(3)
                            }
                        })
                        .collect(),
                )
            }
            "$elemMatch" => {
                if self.chance(2) || depth >= 6 {
                    match self.field_condition(depth + 1) {
                        Bson::Document(d) => Bson::Document(d),
                        _ => Bson::Document(bson::doc! {"$gt": 0}),
                    }
                } else {
                    Bson::Document(self.filter(depth + 1))
                }
            }
            "$not" => {
                if depth < 6 && !self.chance(4) {
                    match self.field_condition(depth + 1) {
                        Bson::Document(d) => Bson::Document(d),
                        other => other,
                    }
                } else {
                    self.regex()
                }
            }
            "$size" => self.number(),
            "$mod" => match self.n(2) {
                0 => Bson::Array(vec![self.number(), self.number()]),
                1 => Bson::Array(vec![self.number()]),
                _ => self.number(),
            },
            "$exists" => match self.n(1) {
                0 => Bson::Boolean(self.chance(2)),
                _ => self.number(),
            },
            _ => self.value(3),
        }
    }

    // ---- updates -----------------------------------------------------------

    pub fn update(&mut self) -> Bson {
        match self.n(9) {
            0 => Bson::Array(self.pipeline()),
            1 => {
                // A replacement.
                let mut d = self.document(1);
                d.remove("$");
                Bson::Document(d)
            }
            2 if self.chance(4) => {
                // Many backfills at once.
                // Many backfills at once: every element of an array of
                // arrays, or several arrays, each padded to the limit.
                let n = self.pick(&[2usize, 3, 12, 100]);
                let index = self.pick(&["1500000", "1499999", "1000000", "1500001"]);
                let op = self.pick(&["$set", "$inc", "$max", "$push", "$setOnInsert"]);
                let mut set = Document::new();
                for i in 0..n {
                    let p = match self.n(2) {
                        0 => format!("arr.{i}.{index}"),
                        1 => format!("{}.{index}", self.pick(&["a", "b", "arr", "n", "s"])),
                        _ => format!("arr.{i}.0.{index}"),
                    };
                    set.insert(p, 1);
                }
                Bson::Document(bson::doc! {op: set})
            }
            _ => {
                let mut d = Document::new();
                let n = 1 + self.n(2);
                for _ in 0..n {
                    let op = self.pick(UPDATE_OPS);
                    let mut fields = Document::new();
                    let k = 1 + self.n(2);
                    for _ in 0..k {
                        let p = self.path();
                        let arg = self.update_operand(op);
                        fields.insert(p, arg);
                    }
                    d.insert(op, fields);
                }
                Bson::Document(d)
            }
        }
    }

    fn update_operand(&mut self, op: &str) -> Bson {
        if self.chance(10) {
            return self.value(2);
        }
        match op {
            "$inc" | "$mul" | "$min" | "$max" => self.number(),
            "$rename" => Bson::String(self.path()),
            "$pop" => match self.n(3) {
                0 => Bson::Int32(1),
                1 => Bson::Int32(-1),
                2 => Bson::Double(-1.0),
                _ => self.number(),
            },
            "$currentDate" => match self.n(2) {
                0 => Bson::Boolean(true),
                1 => {
                    Bson::Document(bson::doc! {"$type": self.pick(&["date", "timestamp", "nope"])})
                }
                _ => self.value(2),
            },
            "$push" | "$addToSet" => {
                if self.chance(2) {
                    let mut m = Document::new();
                    let each = if self.chance(2) {
                        self.numbers()
                    } else {
                        let n = self.n(4);
                        Bson::Array((0..n).map(|_| self.value(3)).collect())
                    };
                    m.insert("$each", each);
                    if self.chance(2) {
                        m.insert("$slice", self.number());
                    }
                    if self.chance(2) {
                        let s = match self.n(2) {
                            0 => Bson::Int32(if self.chance(2) { 1 } else { -1 }),
                            1 => Bson::Document(self.sort()),
                            _ => self.number(),
                        };
                        m.insert("$sort", s);
                    }
                    if self.chance(2) {
                        m.insert("$position", self.number());
                    }
                    if self.chance(6) {
                        m.insert("$foo", 1);
                    }
                    Bson::Document(m)
                } else {
                    self.value(2)
                }
            }
            "$pull" => match self.n(2) {
                0 => self.value(2),
                1 => self.field_condition(1),
                _ => Bson::Document(self.filter(1)),
            },
            "$pullAll" => {
                let n = self.n(3);
                Bson::Array((0..n).map(|_| self.value(3)).collect())
            }
            _ => self.value(2),
        }
    }

    // ---- projections and sorts -----------------------------------------------

    pub fn projection(&mut self) -> Document {
        let mut d = Document::new();
        let n = self.n(3);
        let inclusion = self.chance(2);
        for _ in 0..n {
            let p = self.path();
            let v = match self.n(8) {
                0..=2 => Bson::Int32(i32::from(inclusion)),
                3 => Bson::Boolean(inclusion),
                4 => self.number(),
                5 => Bson::Document(bson::doc! {"$slice": self.number()}),
                6 => Bson::Document(bson::doc! {"$elemMatch": self.filter(1)}),
                _ => self.expr(0),
            };
            d.insert(p, v);
        }
        if self.chance(4) {
            d.insert("_id", Bson::Int32(self.n(1) as i32));
        }
        d
    }

    pub fn sort(&mut self) -> Document {
        let mut d = Document::new();
        let n = self.n(3);
        for _ in 0..n {
            let p = self.path();
            let v = match self.n(6) {
                0..=1 => Bson::Int32(1),
                2 => Bson::Int32(-1),
                3 => {
                    d.insert(self.pick(&["n", "a.b", "arr"]), Bson::Int32(1));
                    continue;
                }
                4 => Bson::Document(bson::doc! {"$meta": "textScore"}),
                5 => Bson::Double(-1.0),
                _ => self.number(),
            };
            d.insert(p, v);
        }
        d
    }

    // ---- expressions ---------------------------------------------------------

    pub fn expr(&mut self, depth: usize) -> Bson {
        if !self.spend() || depth > 6 {
            return self.expr_leaf();
        }
        match self.n(12) {
            0..=2 => self.expr_leaf(),
            3 => {
                let mut d = Document::new();
                let n = 1 + self.n(2);
                for _ in 0..n {
                    let k = self.pick(PLAIN_COMPONENTS);
                    let v = self.expr(depth + 1);
                    d.insert(k, v);
                }
                Bson::Document(d)
            }
            4 => {
                let n = self.n(3);
                Bson::Array((0..n).map(|_| self.expr(depth + 1)).collect())
            }
            5 if self.chance(3) => self.deep_expr(),
            6 if self.chance(2) => self.amplifier(depth),
            _ => {
                let op = self.pick(EXPR_OPS);
                let arg = match op {
                    "$cond" if self.chance(2) => Bson::Document(bson::doc! {
                        "if": self.expr(depth + 1),
                        "then": self.expr(depth + 1),
                        "else": self.expr(depth + 1),
                    }),
                    "$literal" => self.value(2),
                    "$rand" if self.chance(2) => Bson::Document(Document::new()),
                    "$convert" if self.chance(2) => {
                        let to = match self.n(4) {
                            0 => Bson::String(
                                self.pick(&[
                                    "int", "long", "double", "decimal", "string", "date", "bool",
                                    "objectId", "binData", "nope",
                                ])
                                .to_owned(),
                            ),
                            1 => self.number(),
                            _ => self.expr(depth + 1),
                        };
                        let mut d = bson::doc! {"input": self.expr(depth + 1), "to": to};
                        if self.chance(2) {
                            d.insert("onError", self.expr(depth + 1));
                        }
                        if self.chance(3) {
                            d.insert("onNull", self.expr(depth + 1));
                        }
                        Bson::Document(d)
                    }
                    "$range" => {
                        let n = 1 + self.n(3);
                        Bson::Array(
                            (0..n)
                                .map(|_| {
                                    if self.chance(2) {
                                        self.number()
                                    } else {
                                        self.expr(depth + 1)
                                    }
                                })
                                .collect(),
                        )
                    }
                    _ => {
                        if self.chance(5) {
                            self.expr(depth + 1)
                        } else {
                            let n = self.n(3);
                            Bson::Array((0..n).map(|_| self.expr(depth + 1)).collect())
                        }
                    }
                };
                let mut d = Document::new();
                d.insert(op, arg);
                if self.chance(20) {
                    d.insert("$extra", 1);
                }
                Bson::Document(d)
            }
        }
    }

    fn expr_leaf(&mut self) -> Bson {
        match self.n(5) {
            0 | 1 => Bson::String(format!("${}", self.path())),
            2 => Bson::String(
                self.pick(&["$$ROOT", "$$CURRENT", "$$ROOT.a", "$$nope", "$"])
                    .to_owned(),
            ),
            _ => self.scalar(),
        }
    }

    /// An expression nested around the 200 limit (or far past it).
    fn deep_expr(&mut self) -> Bson {
        let levels = if self.chance(4) {
            1000
        } else {
            self.pick(DEPTHS)
        };
        let kind = self.n(3);
        let mut e = Bson::String("$a".into());
        for _ in 0..levels {
            e = match kind {
                0 => Bson::Document(bson::doc! {"$add": [e]}),
                1 => Bson::Array(vec![e]),
                2 => Bson::Document(bson::doc! {"k": e}),
                _ => Bson::Document(bson::doc! {"$concatArrays": [[e]]}),
            };
        }
        e
    }

    /// Expressions that build large values from small specifications.
    fn amplifier(&mut self, depth: usize) -> Bson {
        match self.n(6) {
            0 => {
                let end = self.pick(&[10i64, 1_000_000, 4_000_000, 5_000_000, i64::MAX]);
                Bson::Document(bson::doc! {"$range": [0, end, self.pick(&[1i64, 2, 3])]})
            }
            1 => {
                let n = self.pick(&[2usize, 16, 64, 1000]);
                Bson::Document(bson::doc! {"$concatArrays": vec![Bson::String("$arr".into()); n]})
            }
            2 => {
                let n = self.pick(&[2usize, 16, 64, 1000]);
                Bson::Document(bson::doc! {"$concat": vec![Bson::String("$s".into()); n]})
            }
            3 => {
                let n = self.pick(&[2usize, 16, 1000]);
                Bson::Array(vec![Bson::String("$$ROOT".into()); n])
            }
            4 => Bson::Document(bson::doc! {"$split": [self.expr(depth + 1), ""]}),
            5 => {
                let n = self.pick(&[2usize, 16, 1000]);
                let mut d = Document::new();
                for i in 0..n {
                    d.insert(format!("k{i}"), "$$ROOT");
                }
                Bson::Document(d)
            }
            _ => Bson::Document(bson::doc! {"$toUpper": "$s"}),
        }
    }

    // ---- pipelines -----------------------------------------------------------

    pub fn pipeline(&mut self) -> Vec<Bson> {
        if self.chance(20) {
            let n = self.pick(&[999usize, 1000, 1001, 5000]);
            return vec![Bson::Document(bson::doc! {"$skip": 0}); n];
        }
        let n = self.n(5);
        (0..n).map(|_| Bson::Document(self.stage())).collect()
    }

    fn stage(&mut self) -> Document {
        let name = self.pick(STAGES);
        let arg = match name {
            "$match" => Bson::Document(self.filter(0)),
            "$project" => Bson::Document(self.projection()),
            "$addFields" | "$set" => {
                let mut d = Document::new();
                let n = 1 + self.n(2);
                for _ in 0..n {
                    let p = self.path();
                    let e = self.expr(0);
                    d.insert(p, e);
                }
                Bson::Document(d)
            }
            "$unset" => match self.n(2) {
                0 => Bson::String(self.path()),
                1 => Bson::Array(vec![Bson::String(self.path()), Bson::String(self.path())]),
                _ => self.value(2),
            },
            "$sort" => Bson::Document(self.sort()),
            "$limit" | "$skip" => self.number(),
            "$count" => Bson::String(self.name()),
            "$bucket" => {
                let mut bounds: Vec<Bson> = (0..1 + self.n(4)).map(|_| self.number()).collect();
                if self.chance(2) {
                    bounds.sort_by(argon_sidecar::query::compare::compare);
                }
                let mut d = bson::doc! {"groupBy": self.expr(1), "boundaries": bounds};
                if self.chance(2) {
                    d.insert("default", self.value(1));
                }
                if self.chance(2) {
                    d.insert(
                        "output",
                        bson::doc! {self.name(): {self.pick(ACCUMULATORS): self.expr(1)}},
                    );
                }
                Bson::Document(d)
            }
            "$bucketAuto" => {
                let mut d = bson::doc! {"groupBy": self.expr(1), "buckets": self.number()};
                if self.chance(2) {
                    d.insert(
                        "granularity",
                        self.pick(&["R5", "R80", "1-2-5", "E192", "POWERSOF2", "X"]),
                    );
                }
                Bson::Document(d)
            }
            "$redact" => Bson::Document(bson::doc! {"$cond": [
                self.expr(1),
                self.pick(&["$$DESCEND", "$$PRUNE", "$$KEEP", "$x"]),
                self.pick(&["$$DESCEND", "$$PRUNE", "$$KEEP"]),
            ]}),
            "$setWindowFields" => {
                let bound = |g: &mut Self| -> Bson {
                    match g.n(3) {
                        0 => Bson::String("unbounded".into()),
                        1 => Bson::String("current".into()),
                        _ => g.number(),
                    }
                };
                let window = if self.chance(2) {
                    bson::doc! {"documents": [bound(self), bound(self)]}
                } else {
                    bson::doc! {"range": [bound(self), bound(self)]}
                };
                let func = self.pick(&[
                    "$sum",
                    "$avg",
                    "$min",
                    "$push",
                    "$count",
                    "$stdDevSamp",
                    "$derivative",
                    "$integral",
                    "$rank",
                    "$shift",
                    "$expMovingAvg",
                    "$locf",
                    "$linearFill",
                ]);
                let arg = match func {
                    "$count" | "$rank" => Bson::Document(Document::new()),
                    "$derivative" | "$integral" => {
                        Bson::Document(bson::doc! {"input": self.expr(1)})
                    }
                    "$shift" => {
                        Bson::Document(bson::doc! {"output": self.expr(1), "by": self.number()})
                    }
                    "$expMovingAvg" => {
                        Bson::Document(bson::doc! {"input": self.expr(1), "N": self.number()})
                    }
                    _ => self.expr(1),
                };
                let mut out = bson::doc! {func: arg};
                if self.chance(2) {
                    out.insert("window", window);
                }
                Bson::Document(bson::doc! {
                    "partitionBy": self.expr(1),
                    "sortBy": {self.path(): 1},
                    "output": {self.path(): out},
                })
            }
            "$densify" => {
                let bounds = match self.n(3) {
                    0 => Bson::String("full".into()),
                    1 => Bson::Array(vec![self.number(), self.number()]),
                    _ => Bson::String("partition".into()),
                };
                Bson::Document(bson::doc! {
                    "field": self.path(),
                    "partitionByFields": [self.path()],
                    "range": {"step": self.number(), "bounds": bounds},
                })
            }
            "$fill" => Bson::Document(bson::doc! {
                "sortBy": {self.path(): 1},
                "output": {self.path(): {"method": self.pick(&["locf", "linear"])}, self.path(): {"value": self.expr(1)}},
            }),
            "$group" => {
                let mut d = Document::new();
                if !self.chance(10) {
                    d.insert("_id", self.expr(1));
                }
                let n = self.n(3);
                for _ in 0..n {
                    let acc = self.pick(ACCUMULATORS);
                    let arg = match acc {
                        // Their arguments are named: mostly well formed,
                        // with any `n` (huge, negative, a field).
                        "$firstN" | "$lastN" | "$minN" | "$maxN" if !self.chance(5) => {
                            Bson::Document(bson::doc! {"n": self.expr(1), "input": self.expr(1)})
                        }
                        "$topN" | "$bottomN" if !self.chance(5) => Bson::Document(bson::doc! {
                            "n": self.expr(1),
                            "sortBy": {self.path(): self.pick(&[1, -1])},
                            "output": self.expr(1),
                        }),
                        "$top" | "$bottom" if !self.chance(5) => Bson::Document(bson::doc! {
                            "sortBy": {self.path(): 1},
                            "output": self.expr(1),
                        }),
                        "$percentile" if !self.chance(5) => Bson::Document(bson::doc! {
                            "input": self.expr(1),
                            "p": [self.expr(0), 0.5],
                            "method": "approximate",
                        }),
                        "$median" if !self.chance(5) => Bson::Document(bson::doc! {
                            "input": self.expr(1),
                            "method": "approximate",
                        }),
                        _ if self.chance(3) => self.amplifier(1),
                        _ => self.expr(1),
                    };
                    let k = self.name();
                    d.insert(k, bson::doc! {acc: arg});
                }
                Bson::Document(d)
            }
            "$unwind" => {
                let p = format!("${}", self.path());
                match self.n(2) {
                    0 => Bson::String(p),
                    1 => Bson::Document(bson::doc! {
                        "path": p,
                        "includeArrayIndex": self.path(),
                        "preserveNullAndEmptyArrays": self.chance(2),
                    }),
                    _ => self.value(2),
                }
            }
            "$replaceRoot" => Bson::Document(bson::doc! {"newRoot": self.expr(0)}),
            "$replaceWith" | "$sortByCount" => self.expr(0),
            "$graphLookup" => Bson::Document(bson::doc! {
                "from": "other",
                "startWith": self.expr(1),
                "connectFromField": self.path(),
                "connectToField": self.path(),
                "as": self.path(),
                "maxDepth": self.number(),
            }),
            "$lookup" | "$unionWith" => {
                let mut d = bson::doc! {
                    "from": "other",
                    "localField": self.path(),
                    "foreignField": self.path(),
                    "as": self.path(),
                };
                if self.chance(4) {
                    d.insert(
                        "pipeline",
                        Bson::Array(vec![Bson::Document(bson::doc! {"$match": {}})]),
                    );
                }
                Bson::Document(d)
            }
            "$facet" => Bson::Document(bson::doc! {"f": [{"$match": {}}]}),
            _ => self.value(2),
        };
        let mut d = Document::new();
        d.insert(name, arg);
        d
    }

    // ---- a case ----------------------------------------------------------------

    pub fn case(&mut self) -> Case {
        let mut docs: Vec<Document> = (0..1 + self.n(3)).map(|_| self.stored()).collect();
        if self.chance(4) {
            // Many small documents with extreme numbers, for sorts.
            let near = self.chance(2);
            for i in 0..20 + self.n(28) {
                let v = if self.chance(3) {
                    self.numbers()
                } else {
                    self.number_near(near)
                };
                docs.push(bson::doc! {"_id": i as i32, "n": v.clone(), "a": {"b": v}});
            }
        }
        Case {
            docs,
            filter: self.filter(0),
            update: self.update(),
            projection: self.projection(),
            sort: self.sort(),
            pipeline: self.pipeline(),
            expr: self.expr(0),
        }
    }
}

/// Builds a case from `data`.
pub fn generate(data: &[u8]) -> Case {
    let mut u = Unstructured::new(data);
    Gen::new(&mut u).case()
}

/// The BSON size of a document, or `usize::MAX` if it cannot be encoded.
fn encoded_len(d: &Document) -> usize {
    d.to_vec().map(|v| v.len()).unwrap_or(usize::MAX)
}

/// A document out of a projection or a pipeline: what the server would
/// send (or hand to the next stage) must fit a reply.
fn check_built(what: &str, d: &Document) -> Result<(), String> {
    limits::check_built_document(d, "check").map_err(|e| {
        format!(
            "{what} built a document past the limits ({}): {}",
            limits::document_size(d),
            e.message
        )
    })
}

/// Whether the request document `d` would reach the engine: the wire
/// refuses more than 200 levels of nesting and more than 16 MiB + 16 KiB.
fn reaches_engine(d: &Document) -> bool {
    match d.to_vec() {
        Ok(bytes) => limits::check_message_document(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Parses and applies everything in `case`; an error names a limit a
/// result broke. Panics (and stack overflows) are failures of their own.
/// Call it on a thread with [`limits::WORKER_STACK_SIZE`] of stack, as the
/// server runs requests.
pub fn check(case: &Case) -> Result<(), String> {
    // Only what a write would have stored is in a collection.
    let docs: Vec<Document> = case
        .docs
        .iter()
        .filter(|d| {
            limits::check_storage_depth(d).is_ok()
                && limits::check_update_size(encoded_len(d)).is_ok()
        })
        .cloned()
        .collect();
    let lookup = InMemory(docs.clone());

    // Every request document is checked by the wire; what does not reach
    // the engine there must still be refused (or handled) by the engine
    // itself, so everything is fed to it either way.
    let _ = reaches_engine(&case.filter);

    if let Ok(f) = Filter::parse(&case.filter) {
        for d in &docs {
            let _ = f.try_matches(d);
        }
    }

    if let Ok(u) = UpdateSpec::parse(&case.update) {
        for d in &docs {
            for inserting in [false, true] {
                if let Ok(out) = u.apply(d, inserting) {
                    check_update_result(d, &case.update, &out)?;
                }
            }
        }
        if let Ok(out) = upsert_document(&case.filter, &u) {
            check_update_result(&Document::new(), &case.update, &out)?;
        }
    }

    if let Ok(p) = Projection::parse(&case.projection) {
        for d in &docs {
            if let Ok(out) = p.try_apply(d) {
                check_built("projection", &out)?;
            }
            let _ = p.apply(d);
        }
    }

    if let Ok(s) = SortSpec::parse(&case.sort) {
        let mut v = docs.clone();
        s.sort(&mut v);
        if v.len() != docs.len() {
            return Err("sort lost documents".into());
        }
    }

    if let Ok(p) = Pipeline::parse(&case.pipeline)
        && let Ok(out) = p.run(docs.clone(), &lookup)
    {
        for d in &out {
            check_built("pipeline", d)?;
        }
    }

    if let Ok(e) = Expr::parse(&case.expr) {
        for d in &docs {
            if let Ok(Some(v)) = e.eval(d) {
                let size = limits::bson_size(&v);
                // A value is built within 16 MiB, or is a copy of
                // something that already was (a document, a literal of
                // the request).
                if size > MAX_BUILT_VALUE_SIZE.max(MAX_MESSAGE_DOCUMENT_SIZE) {
                    return Err(format!("expression built a value of {size} bytes"));
                }
            }
        }
    }
    Ok(())
}

/// An update may build a document the write then refuses as too large,
/// but not more than that: at most one array backfill past the size limit
/// (what MongoDB's own update would build before its size check).
fn check_update_result(before: &Document, update: &Bson, out: &Document) -> Result<(), String> {
    let size = limits::document_size(out);
    let bound = MAX_DOCUMENT_SIZE
        + limits::document_size(before)
        + limits::bson_size(update)
        + MAX_ARRAY_BACKFILL * 16;
    if size > bound {
        return Err(format!("update built a document of {size} bytes"));
    }
    Ok(())
}
