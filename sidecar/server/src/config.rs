//! Command-line and environment configuration of `argon-sidecar serve`.
//! Every flag can also be given as an `ARGON_*` environment variable, which
//! is how the operator's webhook configures an injected sidecar.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use argon_wal::store::mongo::redact_uri as redact;
use argon_wal::{EmbeddedStore, LogStore, MongoStore, Wal, WalError, WalOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "argon-sidecar",
    version,
    about = "Argon's data plane: a MongoDB wire-protocol server with branches and time travel."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MongoDB clients from a branch of an Argon project.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Embedded store directory (standalone mode). Project and `main` are created on first start.
    #[arg(long, env = "ARGON_DATA", value_name = "DIR", conflicts_with = "store")]
    pub data: Option<PathBuf>,
    /// Shared store: a MongoDB connection string holding the project's WAL.
    #[arg(long, env = "ARGON_STORE", value_name = "URI")]
    pub store: Option<String>,
    /// Materialized-store directory: a disk cache of the log (versions of
    /// documents and index entries, `argon_wal::materialized`) that reads of
    /// past points are served from, so time travel neither replays history
    /// nor holds it in memory. Rebuilt from the log when missing or damaged;
    /// never shared by two processes.
    #[arg(long, env = "ARGON_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Memory the materialized store may use for its caches and write
    /// buffers (bytes).
    #[arg(long, env = "ARGON_CACHE_BYTES", default_value_t = DEFAULT_CACHE_BYTES,
          requires = "cache_dir",
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(MIN_CACHE_BYTES..))]
    pub cache_bytes: u64,
    /// The most the materialized store may take on disk (bytes): at or
    /// above it the store applies nothing more and past reads of points it
    /// does not hold replay the log. Set it ~10% under the volume's limit
    /// (an `emptyDir`'s `sizeLimit`: the kubelet evicts the pod past it), as
    /// a batch may overshoot. Unbounded when absent.
    #[arg(long, env = "ARGON_CACHE_DISK_BYTES", value_name = "BYTES",
          requires = "cache_dir",
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(MIN_CACHE_DISK_BYTES..))]
    pub cache_disk_bytes: Option<u64>,
    /// Database of the shared store that holds the WAL.
    #[arg(long, env = "ARGON_STORE_DATABASE", default_value = "argon")]
    pub store_database: String,
    /// Project (one WAL and its branches).
    #[arg(long, env = "ARGON_PROJECT", default_value = "default")]
    pub project: String,
    /// The branch that databases named without `~branch` address.
    #[arg(long, env = "ARGON_BRANCH", default_value = "main")]
    pub branch: String,
    /// Address to serve the MongoDB wire protocol on.
    #[arg(long, env = "ARGON_LISTEN", default_value = "127.0.0.1:27017")]
    pub listen: SocketAddr,
    /// Refuse every write and branch change (a read-only branch endpoint).
    #[arg(long, env = "ARGON_READ_ONLY")]
    pub read_only: bool,
    /// Address to serve /metrics, /healthz and /readyz on (off when absent).
    #[arg(long, env = "ARGON_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a multi-document transaction may run before it is aborted
    /// (mongod's `transactionLifetimeLimitSeconds`).
    #[arg(long, env = "ARGON_TRANSACTION_LIFETIME_LIMIT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub transaction_lifetime_limit_seconds: u64,
    /// `maxTimeMS` for commands that give none (mongod's `defaultMaxTimeMS`);
    /// 0: no limit.
    #[arg(long, env = "ARGON_DEFAULT_MAX_TIME_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=i32::MAX as u64))]
    pub default_max_time_ms: u64,
    /// Bytes one blocking stage (a sorted find, `$sort`, `$group`,
    /// `$lookup`'s hash index) holds in memory before it spills to
    /// temporary files (MongoDB's 100 MiB per blocking stage);
    /// `allowDiskUse: false` makes a stage that would spill fail (292).
    #[arg(long, env = "ARGON_MAX_BLOCKING_SORT_BYTES", default_value_t = crate::limits::MAX_BLOCKING_STAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_blocking_sort_bytes: u64,
    /// Bytes one commit may log (the documents a write command writes and
    /// the pre-images they replace). A write command that logs more is
    /// committed in several parts (between documents; between statements
    /// for a retryable write), so it is not atomic, as in MongoDB; within
    /// it, a write command is one atomic commit. It bounds the memory one
    /// write holds (about 3× this at its peak). A multi-document
    /// transaction is never split: one over this fails (146). At least 64
    /// MiB (two 16 MiB documents and their pre-images fit).
    #[arg(long, env = "ARGON_MAX_COMMIT_BYTES", default_value_t = crate::limits::MAX_COMMIT_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(crate::limits::MIN_COMMIT_BYTES as u64..=(1u64 << 40)))]
    pub max_commit_bytes: usize,
    /// Seconds between two passes of the TTL monitor, which deletes the
    /// documents that TTL indexes (`expireAfterSeconds`) expire, on every
    /// branch served (MongoDB's `ttlMonitorSleepSecs`).
    #[arg(long, env = "ARGON_TTL_MONITOR_SLEEP_SECS", default_value_t = crate::ttl::DEFAULT_SLEEP_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ttl_monitor_sleep_secs: u64,
    /// Require authentication (as `mongod --auth`): only the handshake and
    /// `saslStart`/`saslContinue` work before a client authenticates with
    /// SCRAM-SHA-256 or SCRAM-SHA-1, and each command needs a role that
    /// allows it. While the project has no user, a client on 127.0.0.1 may
    /// create the first one (the localhost exception).
    #[arg(long, env = "ARGON_AUTH")]
    pub auth: bool,
    /// A key file, as mongod's `--keyFile` (6 to 1,024 base64 characters,
    /// whitespace ignored, not readable by group or others): its key is the
    /// password of the internal user `__system@local` (SCRAM-SHA-256 or
    /// -1). Argon's admin commands (`argon*`) and user and branch
    /// management then need an authenticated user even without `--auth`
    /// (other commands stay open then). The user is never stored or listed.
    #[arg(long, env = "ARGON_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Serve only the default branch (`--branch`): databases of other
    /// branches (`db~other`), their past points and every branch change
    /// (`argonCreateBranch`, `argonResetBranch`, `argonDeleteBranch`,
    /// `argonProtectBranch`) are refused, with or without authentication.
    /// For an injected sidecar that serves one app its branch.
    #[arg(long, env = "ARGON_CONFINE_TO_BRANCH")]
    pub confine_to_branch: bool,
    /// Serve TLS with this PEM certificate chain (with --tls-key-file);
    /// re-read when the file changes.
    #[arg(
        long,
        env = "ARGON_TLS_CERT_FILE",
        value_name = "PEM",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(
        long,
        env = "ARGON_TLS_KEY_FILE",
        value_name = "PEM",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Most client connections open at once; a connection beyond them is
    /// closed as it arrives (and logged).
    #[arg(long, env = "ARGON_MAX_CONNECTIONS", default_value_t = crate::limits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Where other sidecars on the same shared store forward their writes
    /// when this one is a branch's writer (see `--peer-advertise`). With a
    /// `--store`, sidecars that have it choose one writer per branch and
    /// forward to it, so their writes do not contend; without it this
    /// sidecar commits its own writes.
    #[arg(long, env = "ARGON_PEER_LISTEN", requires = "store")]
    pub peer_listen: Option<SocketAddr>,
    /// A file holding the key sidecars prove to each other on the peer link
    /// (16 to 1,024 bytes, as mongod's keyFile; every sidecar of the
    /// project must hold the same). Without it the key is derived from the
    /// `--store` connection string, credentials included, and the project:
    /// the link then asks of a peer what the store asks of a writer.
    #[arg(long, env = "ARGON_PEER_KEY_FILE", requires = "peer_listen")]
    pub peer_key_file: Option<PathBuf>,
    /// The `host:port` other sidecars dial to reach `--peer-listen` (in a
    /// pod: `$(POD_IP):<port>`). Defaults to the listen address unless that
    /// is unspecified (0.0.0.0 or ::).
    #[arg(long, env = "ARGON_PEER_ADVERTISE", requires = "peer_listen")]
    pub peer_advertise: Option<String>,
    /// With TLS (`--tls-cert-file`) and `--peer-listen`: the PEM CA the
    /// other sidecars' certificates are verified against. The peer
    /// listener serves `--tls-cert-file`; writes are forwarded over TLS.
    #[arg(
        long,
        env = "ARGON_PEER_TLS_CA_FILE",
        value_name = "PEM",
        requires = "peer_listen"
    )]
    pub peer_tls_ca_file: Option<PathBuf>,
    /// The name the other sidecars' certificates carry (peers dial pod
    /// addresses; an endpoint's certificate names its Service).
    #[arg(long, env = "ARGON_PEER_TLS_NAME", requires = "peer_listen")]
    pub peer_tls_name: Option<String>,
    /// With a shared `--store`: how stale (in ms) a read may be with
    /// respect to other sidecars' writes. 0 (the default): every read first
    /// catches up with the store (one store query),
    /// so reads are linearizable across sidecars. Above 0, a read uses the
    /// branch head in memory when it caught up at most this long ago
    /// (fewer store reads under a read-heavy load); this sidecar's own
    /// writes, and those it forwarded, are still always seen, and
    /// `afterClusterTime` reads catch up first.
    #[arg(long, env = "ARGON_MAX_STALENESS_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub max_staleness_ms: u64,
    /// Milliseconds a message may take to arrive once its first byte has;
    /// a client that stalls in the middle of a message is disconnected.
    /// Idle connections between messages are not affected.
    #[arg(long, env = "ARGON_FRAME_TIMEOUT_MS", default_value_t = crate::limits::DEFAULT_FRAME_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_timeout_ms: u64,
    /// Test commands for drivers' spec tests, as mongod's
    /// `--setParameter enableTestCommands=1`: `configureFailPoint` with the
    /// `failCommand` fail point, which makes chosen commands fail, close
    /// their connection or block. Never for production (any client could
    /// then break every other client's commands); without it
    /// `configureFailPoint` is an unknown command.
    #[arg(long, env = "ARGON_ENABLE_TEST_COMMANDS")]
    pub enable_test_commands: bool,
}

/// Where the WAL lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    Embedded(PathBuf),
    Mongo { uri: String, database: String },
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Embedded(dir) => write!(f, "embedded store {}", dir.display()),
            // The URI may hold a password: show only the database.
            StoreChoice::Mongo { database, .. } => {
                write!(f, "mongodb store (database {database:?})")
            }
        }
    }
}

impl ServeArgs {
    /// The connection limits these flags set.
    pub fn server_options(&self) -> crate::server::ServerOptions {
        crate::server::ServerOptions {
            max_connections: self.max_connections,
            frame_timeout: std::time::Duration::from_millis(self.frame_timeout_ms),
            peer: false,
        }
    }

    /// The address peers dial, when this sidecar takes forwarded writes.
    pub fn peer_address(&self) -> Result<Option<String>, String> {
        let Some(listen) = self.peer_listen else {
            return Ok(None);
        };
        if self.store.is_none() {
            return Err(
                "--peer-listen needs a shared --store: an embedded store has one process, which writes every branch itself".into(),
            );
        }
        // Clients that speak TLS: their writes cross the peer link over TLS
        // too (`writer::peer_tls`), never in clear.
        if self.tls_cert_file.is_some()
            && (self.peer_tls_ca_file.is_none() || self.peer_tls_name.is_none())
        {
            return Err(
                "--peer-listen with TLS needs --peer-tls-ca-file and --peer-tls-name: forwarded writes go over TLS, verified against that CA and name".into(),
            );
        }
        if self.tls_cert_file.is_none()
            && (self.peer_tls_ca_file.is_some() || self.peer_tls_name.is_some())
        {
            return Err(
                "--peer-tls-ca-file and --peer-tls-name need --tls-cert-file: the peer listener serves that certificate".into(),
            );
        }
        if let Some(a) = &self.peer_advertise {
            return Ok(Some(a.clone()));
        }
        if listen.ip().is_unspecified() {
            return Err(format!(
                "--peer-listen {listen} is not an address other sidecars can dial: give --peer-advertise host:port"
            ));
        }
        Ok(Some(listen.to_string()))
    }

    /// TLS for forwarded writes, when clients speak TLS (after
    /// [`ServeArgs::peer_address`] accepted the flags).
    pub fn peer_tls(&self) -> Result<Option<crate::writer::peer_tls::PeerTls>, String> {
        match (
            &self.tls_cert_file,
            &self.peer_tls_ca_file,
            &self.peer_tls_name,
        ) {
            (Some(_), Some(ca), Some(name)) => {
                crate::writer::peer_tls::PeerTls::load(ca, name).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The peer link's key: from `--peer-key-file`, else derived from the
    /// store's connection string and the project (`writer::peer_auth`).
    pub fn peer_key(&self) -> Result<crate::writer::peer_auth::PeerKey, String> {
        use crate::writer::peer_auth::PeerKey;
        match (&self.peer_key_file, &self.store) {
            (Some(path), _) => PeerKey::from_file(path, &self.project),
            (None, Some(uri)) => Ok(PeerKey::derive(uri.as_bytes(), &self.project)),
            (None, None) => Err("--peer-listen needs a shared --store".into()),
        }
    }

    pub fn store_choice(&self) -> Result<StoreChoice, String> {
        match (&self.data, &self.store) {
            (Some(dir), None) => Ok(StoreChoice::Embedded(dir.clone())),
            (None, Some(uri)) => {
                if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                    return Err(format!(
                        "--store must be a mongodb:// or mongodb+srv:// connection string, got {:?}",
                        redact(uri)
                    ));
                }
                Ok(StoreChoice::Mongo {
                    uri: uri.clone(),
                    database: self.store_database.clone(),
                })
            }
            (Some(_), Some(_)) => Err("give either --data or --store, not both".into()),
            (None, None) => Err(
                "no store: give --data <dir> (embedded) or --store mongodb://... (shared)".into(),
            ),
        }
    }
}

/// A command-line argument as it may be shown (`getCmdLineOpts`, logs):
/// the credentials of any connection string in it are masked.
pub fn redact_argument(arg: &str) -> String {
    if arg.contains("://") {
        redact(arg)
    } else {
        arg.to_owned()
    }
}

/// The materialized store's memory budget unless `--cache-bytes` says
/// otherwise (issue 17's default: 256 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// The smallest budget the store can work in (its write buffers alone take
/// a quarter of it).
pub const MIN_CACHE_BYTES: u64 = 16 << 20;

/// The smallest disk bound `--cache-disk-bytes` takes: a store that small
/// is full almost at once (its journal alone is written in MiB).
pub const MIN_CACHE_DISK_BYTES: u64 = 16 << 20;

/// Where, with how much memory and within how much disk the materialized
/// store runs.
#[derive(Debug, Clone)]
pub struct CacheChoice {
    pub dir: PathBuf,
    pub bytes: u64,
    /// `None`: unbounded.
    pub disk_bytes: Option<u64>,
}

impl ServeArgs {
    /// The materialized store, when `--cache-dir` asks for one.
    pub fn cache_choice(&self) -> Option<CacheChoice> {
        self.cache_dir.as_ref().map(|dir| CacheChoice {
            dir: dir.clone(),
            bytes: self.cache_bytes,
            disk_bytes: self.cache_disk_bytes,
        })
    }
}

/// Opens the store and the project's WAL (creating the project and `main`).
pub async fn open_wal(store: &StoreChoice, project: &str) -> Result<Wal, WalError> {
    open_wal_observed(
        store,
        project,
        argon_wal::observer::unobserved(),
        std::time::Duration::ZERO,
        None,
        crate::limits::MAX_COMMIT_BYTES,
        None,
    )
    .await
}

/// [`open_wal`], reporting conflicts, commits and other processes' commits
/// to `observer` (the server's metrics).
pub async fn open_wal_observed(
    store: &StoreChoice,
    project: &str,
    observer: Arc<dyn argon_wal::WalObserver>,
    max_staleness: std::time::Duration,
    feed: Option<Arc<dyn argon_wal::CommitFeed>>,
    max_commit_bytes: usize,
    cache: Option<&CacheChoice>,
) -> Result<Wal, WalError> {
    let store: Arc<dyn LogStore> = match store {
        StoreChoice::Embedded(dir) => EmbeddedStore::open(dir)?,
        StoreChoice::Mongo { uri, database } => MongoStore::connect(uri, database).await?,
    };
    let materialized = match cache {
        Some(c) => Some(Arc::new(argon_wal::materialized::Materialized::open(
            &c.dir,
            argon_wal::materialized::MaterializedOptions {
                disk_bytes: c.disk_bytes,
                ..argon_wal::materialized::MaterializedOptions::with_budget(c.bytes)
            },
        )?)),
        None => None,
    };
    let options = WalOptions {
        // Unique per process across pods (each may be pid 1 in its own
        // namespace): other processes' commits are told apart by it.
        actor: format!(
            "argon-sidecar/{}/{}",
            std::env::var("HOSTNAME").unwrap_or_default(),
            std::process::id()
        ),
        observer,
        feed,
        // One owner process writes an embedded store: its heads are always
        // current, and catching up costs nothing worth skipping.
        read_staleness: if store.is_shared() {
            max_staleness
        } else {
            std::time::Duration::ZERO
        },
        max_commit_bytes,
        index_filter: Arc::new(crate::query::PartialIndexFilter),
        materialized,
        ..WalOptions::default()
    };
    Wal::open(store, project, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServeArgs, String> {
        let mut full = vec!["argon-sidecar", "serve"];
        full.extend_from_slice(args);
        let Command::Serve(a) = Cli::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .command;
        Ok(a)
    }

    #[test]
    fn flags_and_store_choice() {
        let a = parse(&["--data", "/tmp/x", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(a.store_choice(), Ok(StoreChoice::Embedded(_))));
        assert_eq!(a.branch, "main");
        assert!(parse(&["--data", "/x", "--store", "mongodb://h"]).is_err());
        assert!(parse(&["--listen", "nope"]).is_err());
        let a = parse(&["--store", "http://x"]).unwrap();
        assert!(a.store_choice().is_err());
        assert!(parse(&[]).unwrap().store_choice().is_err());
        assert_eq!(redact("mongodb://u:p@h/x"), "mongodb://***@h/x");
    }

    #[test]
    fn peer_flags() {
        let store = ["--store", "mongodb://h/"];
        let a = parse(&store).unwrap();
        assert_eq!(a.peer_address(), Ok(None));
        let a = parse(&[&store[..], &["--peer-listen", "127.0.0.1:27018"]].concat()).unwrap();
        assert_eq!(a.peer_address(), Ok(Some("127.0.0.1:27018".into())));
        // An unspecified address cannot be dialled: it needs --peer-advertise.
        let a = parse(&[&store[..], &["--peer-listen", "0.0.0.0:27018"]].concat()).unwrap();
        assert!(a.peer_address().is_err());
        let a = parse(
            &[
                &store[..],
                &[
                    "--peer-listen",
                    "0.0.0.0:27018",
                    "--peer-advertise",
                    "10.0.0.7:27018",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(a.peer_address(), Ok(Some("10.0.0.7:27018".into())));
        // With authentication: the link has its own (peer_auth), and the
        // key is the store's unless a key file is given.
        let a =
            parse(&[&store[..], &["--peer-listen", "127.0.0.1:27018", "--auth"]].concat()).unwrap();
        assert!(a.peer_address().is_ok());
        assert_eq!(format!("{:?}", a.peer_key().unwrap()), "PeerKey(…)");
        assert!(
            parse(
                &[
                    &store[..],
                    &["--peer-listen", "127.0.0.1:1", "--peer-key-file", "/absent"]
                ]
                .concat()
            )
            .unwrap()
            .peer_key()
            .is_err()
        );
        assert!(parse(&[&store[..], &["--peer-key-file", "/k"]].concat()).is_err());
        // With TLS the link needs a CA and a name to verify writers by.
        let a = parse(
            &[
                &store[..],
                &[
                    "--peer-listen",
                    "127.0.0.1:27018",
                    "--tls-cert-file",
                    "/c",
                    "--tls-key-file",
                    "/k",
                ],
            ]
            .concat(),
        )
        .unwrap();
        let e = a.peer_address().unwrap_err();
        assert!(
            e.contains("--peer-tls-ca-file") && e.contains("--peer-tls-name"),
            "{e}"
        );
        let tls = [
            "--peer-listen",
            "127.0.0.1:27018",
            "--tls-cert-file",
            "/c",
            "--tls-key-file",
            "/k",
        ];
        let peer_tls = ["--peer-tls-ca-file", "/absent-ca", "--peer-tls-name", "svc"];
        let a = parse(&[&store[..], &tls, &peer_tls].concat()).unwrap();
        assert_eq!(a.peer_address(), Ok(Some("127.0.0.1:27018".into())));
        let e = a.peer_tls().unwrap_err();
        assert!(e.contains("/absent-ca"), "{e}");
        // Peer TLS flags without TLS for clients: refused by name.
        let a = parse(&[&store[..], &tls[..2], &peer_tls].concat()).unwrap();
        assert!(a.peer_address().unwrap_err().contains("--tls-cert-file"));
        assert!(parse(&[&store[..], &peer_tls].concat()).is_err());
        // Only with a shared store, and the staleness bound is bounded.
        let embedded = parse(&["--data", "/x", "--peer-listen", "127.0.0.1:1"]);
        assert!(embedded.map_or(true, |a| a.peer_address().is_err()));
        assert!(parse(&["--peer-advertise", "h:1"]).is_err());
        assert!(parse(&[&store[..], &["--max-staleness-ms", "60001"]].concat()).is_err());
        assert!(parse(&[&store[..], &["--max-staleness-ms", "-1"]].concat()).is_err());
    }

    #[test]
    fn cache_disk_bound() {
        let cache = ["--data", "/x", "--cache-dir", "/c"];
        // `--flag=value`, so that clap reads "-1" as the value and not as a flag.
        let bound = |v: &str| {
            let flag = format!("--cache-disk-bytes={v}");
            parse(&[&cache[..], &[flag.as_str()]].concat())
        };
        assert_eq!(
            parse(&cache).unwrap().cache_choice().unwrap().disk_bytes,
            None
        );
        let min = MIN_CACHE_DISK_BYTES.to_string();
        assert_eq!(
            bound(&min).unwrap().cache_choice().unwrap().disk_bytes,
            Some(MIN_CACHE_DISK_BYTES)
        );
        let max = u64::MAX.to_string();
        assert_eq!(
            bound(&max).unwrap().cache_choice().unwrap().disk_bytes,
            Some(u64::MAX)
        );
        let below = (MIN_CACHE_DISK_BYTES - 1).to_string();
        for v in ["0", "1", &below, "16MiB", "", "-1", "18446744073709551616"] {
            let e = bound(v).unwrap_err();
            assert!(e.contains("--cache-disk-bytes"), "{v:?}: {e}");
        }
        let e = parse(&["--data", "/x", "--cache-disk-bytes", &min]).unwrap_err();
        assert!(e.contains("--cache-dir"), "{e}");
    }

    #[test]
    fn connection_limits() {
        let o = parse(&["--data", "/x"]).unwrap().server_options();
        assert_eq!(o.max_connections, crate::limits::DEFAULT_MAX_CONNECTIONS);
        assert_eq!(o.frame_timeout, crate::limits::DEFAULT_FRAME_TIMEOUT);
        let o = parse(&["--max-connections", "5", "--frame-timeout-ms", "250"])
            .unwrap()
            .server_options();
        assert_eq!(o.max_connections, 5);
        assert_eq!(o.frame_timeout, std::time::Duration::from_millis(250));
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--frame-timeout-ms", "0"]).is_err());
        assert!(parse(&["--max-connections", "-3"]).is_err());
    }
}
