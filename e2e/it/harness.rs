//! Running `sphere-cli` as a user would: a clean environment (no inherited
//! `SPHERE_*` variables), optional standard input, and no controlling terminal unless
//! a test asks for one (so a prompt can never hang a test).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sphere-cli");

/// One invocation of the CLI.
pub(crate) struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

/// Starts an invocation with `--data-dir DIR` and `args`.
pub(crate) fn cli(data_dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    Run {
        args: all,
        env: Vec::new(),
        stdin: None,
    }
}

impl Run {
    /// Sets an environment variable for this run.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Feeds `input` on standard input.
    pub(crate) fn stdin(mut self, input: &str) -> Self {
        self.stdin = Some(input.as_bytes().to_vec());
        self
    }

    /// Runs detached from any terminal (`setsid`), waits, and returns the outcome.
    pub(crate) fn run(self) -> Outcome {
        let mut cmd = Command::new("setsid");
        cmd.arg("--wait").arg(BIN).args(&self.args);
        self.finish(cmd)
    }

    /// Runs inside a fresh pseudo-terminal (`script`), typing `self.stdin` into it.
    pub(crate) fn run_in_pty(self) -> Outcome {
        let line = std::iter::once(BIN.to_owned())
            .chain(self.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        self.finish(cmd)
    }

    fn finish(self, mut cmd: Command) -> Outcome {
        for (k, _) in std::env::vars() {
            if k.starts_with("SPHERE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning sphere-cli");
        let mut stdin = child.stdin.take().expect("piped stdin");
        if let Some(input) = &self.stdin {
            stdin.write_all(input).expect("writing stdin");
        }
        drop(stdin);
        Outcome(child.wait_with_output().expect("waiting for sphere-cli"))
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a run produced.
pub(crate) struct Outcome(pub(crate) Output);

impl Outcome {
    pub(crate) fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    pub(crate) fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts success and parses stdout as one JSON object.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).expect("stdout is one JSON object")
    }

    /// Asserts exit code `code`, no panic, and an `error:` line; returns stderr.
    pub(crate) fn fails_with(&self, code: i32) -> String {
        let err = self.stderr();
        assert_eq!(
            self.code(),
            code,
            "stdout: {}\nstderr: {err}",
            self.stdout()
        );
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(err.contains("error: "), "no error line: {err}");
        err
    }
}

/// A temporary directory that holds one or more data dirs.
pub(crate) fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("creating a temp dir")
}

/// `<work>/<name>`.
pub(crate) fn dir_in(work: &tempfile::TempDir, name: &str) -> PathBuf {
    work.path().join(name)
}
