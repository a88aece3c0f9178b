//! MongoDB error codes and the command error type.
//!
//! Every code this server emits is in the one table below, with MongoDB's
//! number and codeName; [`CommandError::to_document`] is the one place an
//! error becomes the `{ok: 0, errmsg, code, codeName}` reply.

use bson::{Document, doc};

macro_rules! error_codes {
    ($($name:ident = $code:literal,)*) => {
        /// MongoDB's error codes (names and numbers as in MongoDB's error_codes.yml).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($name,)* }

        impl ErrorCode {
            pub fn code(self) -> i32 {
                match self { $(Self::$name => $code,)* }
            }
            pub fn name(self) -> &'static str {
                match self { $(Self::$name => stringify!($name),)* }
            }
            pub const ALL: &'static [ErrorCode] = &[$(Self::$name,)*];
        }
    };
}

error_codes! {
    InternalError = 1,
    BadValue = 2,
    InvalidLength = 16,
    NoSuchKey = 4,
    HostUnreachable = 6,
    FailedToParse = 9,
    Unauthorized = 13,
    TypeMismatch = 14,
    IllegalOperation = 20,
    InvalidBSON = 22,
    NamespaceNotFound = 26,
    IndexNotFound = 27,
    PathNotViable = 28,
    ConflictingUpdateOperators = 40,
    CursorNotFound = 43,
    CappedPositionLost = 136,
    NamespaceExists = 48,
    DollarPrefixedFieldName = 52,
    InvalidIdField = 53,
    EmptyFieldName = 56,
    CommandNotFound = 59,
    ImmutableField = 66,
    InvalidOptions = 72,
    InvalidNamespace = 73,
    IndexOptionsConflict = 85,
    IndexKeySpecsConflict = 86,
    CannotCreateIndex = 67,
    OperationFailed = 96,
    CommandNotSupported = 115,
    CommandNotSupportedOnView = 166,
    OptionNotSupportedOnView = 167,
    ViewDepthLimitExceeded = 149,
    GraphContainsCycle = 5,
    InvalidPipelineOperator = 168,
    CannotIndexParallelArrays = 171,
    Overflow = 15,
    CannotBackfillArray = 34,
    ExceededMemoryLimit = 146,
    MaxSubPipelineDepthExceeded = 232,
    NotImplemented = 238,
    Location4568 = 4568,
    Location10065 = 10065,
    Location5787900 = 5787900,
    Location5787801 = 5787801,
    Location5787901 = 5787901,
    Location5787902 = 5787902,
    Location5787903 = 5787903,
    Location5787906 = 5787906,
    Location5787907 = 5787907,
    Location5787908 = 5787908,
    Location5788001 = 5788001,
    Location5788002 = 5788002,
    Location5788003 = 5788003,
    Location5788004 = 5788004,
    Location5788005 = 5788005,
    Location5788200 = 5788200,
    Location40400 = 40400,
    Location7429703 = 7429703,
    Location7436200 = 7436200,
    Location7436100 = 7436100,
    Location7436201 = 7436201,
    Location7750300 = 7750300,
    Location7750301 = 7750301,
    Location7750302 = 7750302,
    Location7750303 = 7750303,
    Location15947 = 15947,
    Location15952 = 15952,
    Location15955 = 15955,
    Location15983 = 15983,
    Location16410 = 16410,
    Location17217 = 17217,
    // Text search: a language override of the wrong type, an unsupported
    // language in a document, `$text` past the first stage, `textScore`
    // without `$text`.
    Location17261 = 17261,
    Location17307 = 17307,
    Location17262 = 17262,
    Location17313 = 17313,
    Location40218 = 40218,
    Location17419 = 17419,
    Location17420 = 17420,
    Location31138 = 31138,
    Location31249 = 31249,
    Location31250 = 31250,
    Location31252 = 31252,
    Location31253 = 31253,
    Location31254 = 31254,
    Location31255 = 31255,
    Location31256 = 31256,
    Location31257 = 31257,
    Location31258 = 31258,
    Location31259 = 31259,
    Location31270 = 31270,
    Location31271 = 31271,
    Location31272 = 31272,
    Location31273 = 31273,
    Location31274 = 31274,
    Location31275 = 31275,
    Location31276 = 31276,
    Location31277 = 31277,
    Location31287 = 31287,
    Location31308 = 31308,
    Location31310 = 31310,
    Location31324 = 31324,
    Location17308 = 17308,
    Location51270 = 51270,
    Location51050 = 51050,
    Location51246 = 51246,
    Location28769 = 28769,
    Location40228 = 40228,
    Location40234 = 40234,
    Location40169 = 40169,
    Location40170 = 40170,
    Location40171 = 40171,
    Location40174 = 40174,
    Location40600 = 40600,
    Location28745 = 28745,
    Location28746 = 28746,
    Location28747 = 28747,
    Location28748 = 28748,
    Location28749 = 28749,
    Location40323 = 40323,
    Location40324 = 40324,
    Location40414 = 40414,
    Location51024 = 51024,
    Location34443 = 34443,
    Location34444 = 34444,
    Location34445 = 34445,
    Location34446 = 34446,
    Location34447 = 34447,
    Location34448 = 34448,
    Location34449 = 34449,
    Location5729100 = 5729100,
    Location15998 = 15998,
    Location16020 = 16020,
    Location7749501 = 7749501,
    Location3041705 = 3041705,
    Location16866 = 16866,
    Location16990 = 16990,
    Location5858203 = 5858203,
    Location40601 = 40601,
    Location51132 = 51132,
    Location51183 = 51183,
    Location51199 = 51199,
    MergeStageNoMatchingDocument = 13113,
    Location17276 = 17276,
    Location16867 = 16867,
    Location16868 = 16868,
    // The arithmetic, string and array operators of query::expr::mod.rs.
    Location16608 = 16608,
    Location16609 = 16609,
    Location16610 = 16610,
    Location16611 = 16611,
    Location16612 = 16612,
    Location16702 = 16702,
    Location34471 = 34471,
    Location40085 = 40085,
    Location40086 = 40086,
    Location40087 = 40087,
    Location17124 = 17124,
    Location28689 = 28689,
    Location28690 = 28690,
    Location28691 = 28691,
    Location40081 = 40081,
    // The binding and branching expressions ($let, $map, $filter, $reduce, $switch).
    Location16874 = 16874,
    Location16875 = 16875,
    Location16876 = 16876,
    Location16877 = 16877,
    Location16878 = 16878,
    Location16879 = 16879,
    Location16880 = 16880,
    Location16882 = 16882,
    Location16883 = 16883,
    Location28646 = 28646,
    Location28647 = 28647,
    Location28648 = 28648,
    Location28650 = 28650,
    Location28651 = 28651,
    Location327391 = 327391,
    Location327392 = 327392,
    Location40060 = 40060,
    Location40061 = 40061,
    Location40062 = 40062,
    Location40063 = 40063,
    Location40064 = 40064,
    Location40065 = 40065,
    Location40066 = 40066,
    Location40067 = 40067,
    Location40068 = 40068,
    Location40075 = 40075,
    Location40076 = 40076,
    Location40077 = 40077,
    Location40078 = 40078,
    Location40079 = 40079,
    Location40080 = 40080,
    Location40415 = 40415,
    // find's min/max: index not compatible, min not before max, min and
    // max of different fields.
    Location51174 = 51174,
    Location51175 = 51175,
    Location51176 = 51176,
    Location4161100 = 4161100,
    Location4161101 = 4161101,
    Location4161102 = 4161102,
    Location4161103 = 4161103,
    Location4161105 = 4161105,
    Location4161106 = 4161106,
    DuplicateKey = 11000,
    NotWritablePrimary = 10107,
    InvalidIndexSpecificationOption = 197,
    Interrupted = 11601,
    InterruptedDueToReplStateChange = 11602,
    BSONObjectTooLarge = 10334,
    MaxTimeMSExpired = 50,
    WriteConflict = 112,
    ConflictingOperationInProgress = 117,
    IncompleteTransactionHistory = 217,
    TransactionTooOld = 225,
    NoSuchTransaction = 251,
    QueryExceededMemoryLimitNoDiskUseAllowed = 292,
    // Geospatial: invalid geometry under a 2dsphere index; a 2d index's
    // value that is not a legacy pair, not an object or array, out of
    // bounds; `$near` in an aggregation `$match`.
    Location16755 = 16755,
    Location16800 = 16800,
    Location16801 = 16801,
    Location13026 = 13026,
    Location13027 = 13027,
    Location16804 = 16804,
    Location5626500 = 5626500,
    // `$geoNear` not the first stage.
    Location40603 = 40603,
    // `$text` under `$or` with a clause no index serves.
    NoQueryExecutionPlans = 291,
    TooManyLogicalSessions = 261,
    TransactionCommitted = 256,
    OperationNotSupportedInTransaction = 263,
    // 257, not 334 (334 is MechanismUnavailable).
    TransactionTooLarge = 257,
    MechanismUnavailable = 334,
    AuthenticationFailed = 18,
    UserNotFound = 11,
    RoleNotFound = 31,
    ProtocolError = 17,
    // `createUser` of a user that exists.
    Location51003 = 51003,
    // `configureFailPoint` of a fail point Argon does not have.
    FailPointSetFailed = 266,
    // A write that a collection's validator refuses.
    DocumentValidationFailure = 121,
    // Server-side JavaScript, which Argon has no engine for (as a mongod
    // with `security.javascriptEnabled: false`): `$where`, `$function` and
    // `$accumulator`, `mapReduce`.
    // $densify.
    Location5733401 = 5733401,
    Location5733402 = 5733402,
    Location5733403 = 5733403,
    Location5733404 = 5733404,
    Location5733405 = 5733405,
    Location5733406 = 5733406,
    Location5733408 = 5733408,
    Location5733409 = 5733409,
    Location5733410 = 5733410,
    Location5946800 = 5946800,
    Location5946802 = 5946802,
    Location6586400 = 6586400,
    Location5876900 = 5876900,
    Location8993000 = 8993000,
    Location9554500 = 9554500,
    Location5733201 = 5733201,
    Location6053600 = 6053600,
    Location5897900 = 5897900,
    // $fill, $linearFill.
    Location6050200 = 6050200,
    Location6050201 = 6050201,
    Location6050202 = 6050202,
    Location6050203 = 6050203,
    Location6050204 = 6050204,
    Location6050106 = 6050106,
    Location605001 = 605001,
    // $setWindowFields.
    Location5371601 = 5371601,
    Location5371602 = 5371602,
    Location5371603 = 5371603,
    Location5624900 = 5624900,
    Location5624901 = 5624901,
    Location5423901 = 5423901,
    Location5423902 = 5423902,
    Location5339900 = 5339900,
    Location5339901 = 5339901,
    Location5339902 = 5339902,
    Location8947401 = 8947401,
    Location5429413 = 5429413,
    Location5429414 = 5429414,
    Location5429513 = 5429513,
    // $graphLookup.
    Location40099 = 40099,
    Location40100 = 40100,
    Location40101 = 40101,
    Location40102 = 40102,
    Location40103 = 40103,
    Location40104 = 40104,
    Location40105 = 40105,
    Location40185 = 40185,
    // $redact.
    Location17053 = 17053,
    // $bucket, $bucketAuto.
    Location7158303 = 7158303,
    Location40191 = 40191,
    Location40192 = 40192,
    Location40193 = 40193,
    Location40194 = 40194,
    Location40195 = 40195,
    Location40196 = 40196,
    Location40197 = 40197,
    Location40198 = 40198,
    Location40199 = 40199,
    Location40200 = 40200,
    Location40201 = 40201,
    Location40202 = 40202,
    Location40239 = 40239,
    Location40240 = 40240,
    Location40241 = 40241,
    Location40242 = 40242,
    Location40243 = 40243,
    Location40244 = 40244,
    Location40245 = 40245,
    Location40246 = 40246,
    Location40257 = 40257,
    Location40258 = 40258,
    Location40259 = 40259,
    Location40260 = 40260,
    Location40261 = 40261,
    Location6108304 = 6108304,
    Location31264 = 31264,
    Location31246 = 31246,
    // String, array and set expression operators (query::expr::string, query::expr::array).
    Location50694 = 50694,
    Location50695 = 50695,
    Location50696 = 50696,
    Location50699 = 50699,
    Location50700 = 50700,
    Location40091 = 40091,
    Location40092 = 40092,
    Location40093 = 40093,
    Location40094 = 40094,
    Location40096 = 40096,
    Location40097 = 40097,
    Location16034 = 16034,
    Location16035 = 16035,
    Location50752 = 50752,
    Location28656 = 28656,
    Location28657 = 28657,
    Location34450 = 34450,
    Location34451 = 34451,
    Location34452 = 34452,
    Location34453 = 34453,
    Location34454 = 34454,
    Location34455 = 34455,
    Location34470 = 34470,
    Location34473 = 34473,
    Location51744 = 51744,
    Location51745 = 51745,
    Location51746 = 51746,
    Location51747 = 51747,
    Location51748 = 51748,
    Location51749 = 51749,
    Location51750 = 51750,
    Location51751 = 51751,
    Location51103 = 51103,
    Location31022 = 31022,
    Location31023 = 31023,
    Location31024 = 31024,
    Location51104 = 51104,
    Location51105 = 51105,
    Location51106 = 51106,
    Location51107 = 51107,
    Location51108 = 51108,
    Location51109 = 51109,
    Location51110 = 51110,
    Location51111 = 51111,
    Location16007 = 16007,
    Location28667 = 28667,
    Location28724 = 28724,
    Location28725 = 28725,
    Location28726 = 28726,
    Location28727 = 28727,
    Location28728 = 28728,
    Location28729 = 28729,
    Location34435 = 34435,
    Location40090 = 40090,
    Location34460 = 34460,
    Location34461 = 34461,
    Location34462 = 34462,
    Location34463 = 34463,
    Location34464 = 34464,
    Location34465 = 34465,
    Location34466 = 34466,
    Location34467 = 34467,
    Location34468 = 34468,
    Location2942500 = 2942500,
    Location2942501 = 2942501,
    Location2942502 = 2942502,
    Location2942503 = 2942503,
    Location2942504 = 2942504,
    Location2942506 = 2942506,
    Location40386 = 40386,
    Location40390 = 40390,
    Location40391 = 40391,
    Location40392 = 40392,
    Location40393 = 40393,
    Location40394 = 40394,
    Location40395 = 40395,
    Location40396 = 40396,
    Location40397 = 40397,
    Location40398 = 40398,
    Location4940400 = 4940400,
    Location4940401 = 4940401,
    Location17040 = 17040,
    Location17042 = 17042,
    Location17043 = 17043,
    Location17044 = 17044,
    Location17045 = 17045,
    Location17046 = 17046,
    Location17047 = 17047,
    Location17048 = 17048,
    Location17049 = 17049,
    Location51151 = 51151,
    // Date expressions (expr::date): parse and evaluation errors of $year ...
    // $dateTrunc, and the parse failure of $dateFromString.
    ConversionFailure = 241,
    Location16006 = 16006,
    Location18533 = 18533,
    Location18534 = 18534,
    Location18535 = 18535,
    Location18536 = 18536,
    Location18537 = 18537,
    Location18628 = 18628,
    Location18629 = 18629,
    Location31034 = 31034,
    Location31095 = 31095,
    Location40485 = 40485,
    Location40489 = 40489,
    Location40515 = 40515,
    Location40516 = 40516,
    Location40517 = 40517,
    Location40518 = 40518,
    Location40519 = 40519,
    Location40520 = 40520,
    Location40521 = 40521,
    Location40522 = 40522,
    Location40523 = 40523,
    Location40524 = 40524,
    Location40525 = 40525,
    Location40535 = 40535,
    Location40536 = 40536,
    Location40539 = 40539,
    Location40540 = 40540,
    Location40541 = 40541,
    Location40542 = 40542,
    Location40684 = 40684,
    Location5166301 = 5166301,
    Location5166302 = 5166302,
    Location5166303 = 5166303,
    Location5166304 = 5166304,
    Location5166305 = 5166305,
    Location5166307 = 5166307,
    Location5166308 = 5166308,
    Location5166400 = 5166400,
    Location5166401 = 5166401,
    Location5166402 = 5166402,
    Location5166403 = 5166403,
    Location5166405 = 5166405,
    Location5166406 = 5166406,
    Location5439000 = 5439000,
    Location5439001 = 5439001,
    Location5439002 = 5439002,
    Location5439004 = 5439004,
    Location5439006 = 5439006,
    Location5439007 = 5439007,
    Location5439008 = 5439008,
    Location5439009 = 5439009,
    Location5439010 = 5439010,
    Location5439012 = 5439012,
    Location5439013 = 5439013,
    Location5439015 = 5439015,
    Location5439016 = 5439016,
    Location5439017 = 5439017,
    Location5439018 = 5439018,
    Location5976500 = 5976500,
    Location6045000 = 6045000,
    // Math and conversion expression operators (query::expr::math, ::convert).
    Location50989 = 50989,
    Location28765 = 28765,
    Location51044 = 51044,
    Location51045 = 51045,
    Location28756 = 28756,
    Location28757 = 28757,
    Location28758 = 28758,
    Location28759 = 28759,
    Location28761 = 28761,
    Location28762 = 28762,
    Location28763 = 28763,
    Location28764 = 28764,
    Location28766 = 28766,
    Location28714 = 28714,
    Location51080 = 51080,
    Location51081 = 51081,
    Location51082 = 51082,
    Location51083 = 51083,
    Location3040501 = 3040501,
    Location16004 = 16004,
    Location31393 = 31393,
    Location51276 = 51276,
    Location5687301 = 5687301,
    Location5687302 = 5687302,
    Location4341106 = 4341106,
    Location4341107 = 4341107,
    Location4341108 = 4341108,
    Location4341114 = 4341114,
    Location4341115 = 4341115,
    Location4341125 = 4341125,
    // Exact arithmetic: `$abs` of the smallest long, a decimal `$mod` by zero.
    Location28680 = 28680,
    Location5733415 = 5733415,
}

/// Names of MongoDB codes Argon never raises itself but a client may name
/// (a `failCommand` fail point's `errorCode`, a `writeConcernError`), as
/// MongoDB 8.0's `error_codes.yml` spells them.
const OTHER_CODE_NAMES: &[(i32, &str)] = &[
    (7, "HostNotFound"),
    (8, "UnknownError"),
    (24, "LockTimeout"),
    (64, "WriteConcernFailed"),
    (79, "UnknownReplWriteConcern"),
    (89, "NetworkTimeout"),
    (91, "ShutdownInProgress"),
    (100, "UnsatisfiableWriteConcern"),
    (133, "FailedToSatisfyReadPreference"),
    (134, "ReadConcernMajorityNotAvailableYet"),
    (150, "StaleEpoch"),
    (189, "PrimarySteppedDown"),
    (239, "SnapshotTooOld"),
    (246, "SnapshotUnavailable"),
    (249, "StaleDbVersion"),
    (250, "StaleChunkHistory"),
    (262, "ExceededTimeLimit"),
    (267, "PreparedTransactionInProgress"),
    (272, "MigrationConflict"),
    (317, "ConnectionPoolExpired"),
    (343, "ShardCannotRefreshDueToLocksHeld"),
    (358, "InternalTransactionNotSupported"),
    (384, "ConnectionError"),
    (9001, "SocketException"),
    (11600, "InterruptedAtShutdown"),
    (11601, "Interrupted"),
    (11602, "InterruptedDueToReplStateChange"),
    (13388, "StaleConfig"),
    (13435, "NotPrimaryNoSecondaryOk"),
    (13436, "NotPrimaryOrSecondary"),
    (50915, "BackupCursorOpenConflictWithCheckpoint"),
];

/// The `codeName` of any numeric code: MongoDB's name when it has one,
/// else `Location<code>` (what mongod answers for a code without a name).
pub fn code_name(code: i32) -> String {
    if let Some(c) = ErrorCode::ALL.iter().find(|c| c.code() == code) {
        return c.name().to_owned();
    }
    match OTHER_CODE_NAMES.iter().find(|(n, _)| *n == code) {
        Some((_, name)) => (*name).to_owned(),
        None => format!("Location{code}"),
    }
}

/// A command failed: the reply is `ok: 0` with this code and message, and
/// the connection goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?} ({}): {message}", code.code())]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the reply (e.g. `keyPattern`/`keyValue` of a duplicate key).
    pub extra: Option<Document>,
    /// `errorLabels` that tell a driver how to retry (a set of [`Label`]s).
    pub labels: u8,
}

/// An error label (`errorLabels` in a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Label {
    /// The driver retries the whole transaction.
    TransientTransactionError = 1,
    /// The commit's outcome is unknown: the driver retries the commit.
    UnknownTransactionCommitResult = 2,
}

impl Label {
    const ALL: [Label; 2] = [
        Label::TransientTransactionError,
        Label::UnknownTransactionCommitResult,
    ];

    fn name(self) -> &'static str {
        match self {
            Label::TransientTransactionError => "TransientTransactionError",
            Label::UnknownTransactionCommitResult => "UnknownTransactionCommitResult",
        }
    }
}

pub type Result<T, E = CommandError> = std::result::Result<T, E>;

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            extra: None,
            labels: 0,
        }
    }

    pub fn with_label(mut self, label: Label) -> Self {
        self.labels |= label as u8;
        self
    }

    pub fn has_label(&self, label: Label) -> bool {
        self.labels & label as u8 != 0
    }

    fn label_names(&self) -> Vec<&'static str> {
        Label::ALL
            .into_iter()
            .filter(|l| self.has_label(*l))
            .map(Label::name)
            .collect()
    }

    pub fn with_extra(mut self, extra: Document) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadValue, message)
    }

    pub fn type_mismatch(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TypeMismatch, message)
    }

    pub fn failed_to_parse(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedToParse, message)
    }

    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            ErrorCode::CommandNotSupported,
            format!("{what} is not implemented yet"),
        )
    }

    /// The `ok: 0` reply document.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.message.clone(),
            "code": self.code.code(),
            "codeName": self.code.name(),
        };
        if let Some(extra) = &self.extra {
            d.extend(extra.clone());
        }
        if self.labels != 0 {
            d.insert("errorLabels", self.label_names());
        }
        d
    }

    /// The `{index, code, errmsg}` entry of a write command's `writeErrors`.
    pub fn to_write_error(&self, index: usize) -> Document {
        let mut d = doc! {
            "index": index as i32,
            "code": self.code.code(),
            "codeName": self.code.name(),
            "errmsg": self.message.clone(),
        };
        if let Some(extra) = &self.extra {
            d.extend(extra.clone());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "{c:?} duplicates a code");
        }
    }

    #[test]
    fn reply_shape() {
        let d = CommandError::new(ErrorCode::CommandNotFound, "no such command: 'x'").to_document();
        assert_eq!(d.get_i32("code").unwrap(), 59);
        assert_eq!(d.get_str("codeName").unwrap(), "CommandNotFound");
        assert_eq!(d.get_f64("ok").unwrap(), 0.0);
    }
}
