//! A server child process that cannot outlive its test.
//!
//! Two mechanisms together guarantee no orphans:
//! - `Drop` kills and reaps the child (covers normal ends and panics);
//! - every child is spawned with `PR_SET_PDEATHSIG = SIGKILL` from one
//!   long-lived spawner thread, so when the test process dies for any reason
//!   (including SIGKILL, where no destructor runs) the kernel kills the child.
//!   The signal fires when the *spawning thread* exits, which is why spawning
//!   happens on a thread that lives as long as the process, not on the
//!   short-lived thread of one test.

#![allow(unsafe_code)] // pre_exec + prctl: the only way to set PDEATHSIG.

use anyhow::Context;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("argon-testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // The receiver may have given up; nothing to do then.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the testkit spawner thread");
        Mutex::new(tx)
    })
}

fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("testkit spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread dropped the request"))?
}

/// A running server. Its stdout and stderr go to `<dir>/<name>.log`.
pub struct ServerProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `program args…` with output captured in `log_dir/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(name, program, args, log_dir, &[])
    }

    /// [`ServerProcess::start`] with `env` added to the inherited environment.
    pub fn start_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("creating log file {}", log_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_tied_to_process(command)
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Fails if the process has already exited (a server that died on start).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited with {status}; log errors:\n{}\nlast log lines:\n{}",
                self.name,
                self.log_errors(20),
                self.log_tail(20)
            ),
        }
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = File::open(&self.log_path) else {
            return String::from("(no log)");
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Up to `lines` error and fatal lines of the log (klog `E`/`F` lines,
    /// and lines mentioning an error), which a long log tail can bury.
    pub fn log_errors(&self, lines: usize) -> String {
        let Ok(file) = File::open(&self.log_path) else {
            return String::from("(no log)");
        };
        let errors: Vec<String> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|l| {
                l.starts_with('E') || l.starts_with('F') || l.to_lowercase().contains("error")
            })
            .collect();
        errors[errors.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (last 60 lines of {}) ----\n{}\n---- end of {} log ----",
                self.name,
                self.log_path.display(),
                self.log_tail(60),
                self.name
            );
        }
        self.kill();
    }
}
