//! `sphere-cli aggregator` + `sphere-cli pointer publish|discover|inspect` as
//! separate processes: two data dirs initialised from the same mnemonic; what one
//! publishes, the other discovers from the mnemonic alone.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub(crate) const MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sphere-cli"))
}

/// Kills the aggregator when the test ends, however it ends.
pub(crate) struct Aggregator {
    child: Child,
    pub(crate) url: String,
    pub(crate) trust_base: String,
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_aggregator(dir: &Path) -> Aggregator {
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(dir);
    spawn_aggregator(cmd)
}

/// Starts `cmd` + `aggregator` on a loopback port and reads its two first lines.
fn spawn_aggregator(mut cmd: Command) -> Aggregator {
    let mut child = cmd
        .args(["aggregator", "--listen", "127.0.0.1:0", "--round-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn aggregator");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut url = String::new();
    out.read_line(&mut url).expect("first line");
    let mut tb = String::new();
    out.read_line(&mut tb).expect("second line");
    let url = url.trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "first line is the URL: {url:?}"
    );
    let trust_base = tb.trim().trim_start_matches("trust base: ").to_owned();
    assert!(
        Path::new(&trust_base).exists(),
        "trust base exported at {trust_base}"
    );
    Aggregator {
        child,
        url,
        trust_base,
    }
}

pub(crate) fn init_wallet(dir: &Path) {
    let mut child = bin()
        .arg("--data-dir")
        .arg(dir)
        .args(["init", "--mnemonic-stdin", "--no-store-mnemonic"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn init");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(MNEMONIC.as_bytes())
        .expect("write mnemonic");
    assert!(child.wait().expect("init exits").success());
}

fn pointer_json(dir: &Path, agg: &Aggregator, args: &[&str]) -> Value {
    let out = bin()
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "pointer"])
        .args(args)
        .args(["--aggregator", &agg.url, "--trust-base", &agg.trust_base])
        .output()
        .expect("run pointer");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn publish_on_one_device_discover_on_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let agg = start_aggregator(&tmp.path().join("agg"));
    let (w1, w2) = (tmp.path().join("w1"), tmp.path().join("w2"));
    init_wallet(&w1);
    init_wallet(&w2);

    let empty = pointer_json(&w2, &agg, &["discover", "--no-fetch"]);
    assert_eq!(empty["cid"], Value::Null);
    assert_eq!(empty["version"], 0);

    let c1 = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";
    let c2 = "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae";
    let p1 = pointer_json(&w1, &agg, &["publish", "--cid", c1]);
    assert_eq!(p1["version"], 1);
    let p2 = pointer_json(&w1, &agg, &["publish", "--cid", c2]);
    assert_eq!(p2["version"], 2);

    let found = pointer_json(&w2, &agg, &["discover", "--no-fetch"]);
    assert_eq!(found["cid"], c2);
    assert_eq!(found["version"], 2);
    // O(log v): one upper probe and ten bisections at two RPCs each.
    assert!(found["rpc_count"].as_u64().expect("count") <= 24, "{found}");

    // The second device continues the chain, the first sees it.
    let p3 = pointer_json(&w2, &agg, &["publish", "--cid", c1]);
    assert_eq!(p3["version"], 3);
    assert_eq!(
        pointer_json(&w1, &agg, &["discover", "--no-fetch"])["cid"],
        c1
    );

    // inspect: same wallet → same public key and state ids on both devices, and
    // the ciphertexts for a CID are what was published (deterministic).
    let inspect = |dir: &Path| -> Value {
        let out = bin()
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--json",
                "pointer",
                "inspect",
                "--version",
                "3",
                "--cid",
                c1,
            ])
            .output()
            .expect("inspect");
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let (i1, i2) = (inspect(&w1), inspect(&w2));
    assert_eq!(i1, i2);
    assert_eq!(i1["signing_public_key"], p3["signing_public_key"]);
    assert_eq!(
        i1["sides"]["A"]["state_id"].as_str().map(str::len),
        Some(64)
    );
}

#[test]
fn aggregator_state_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let agg_dir = tmp.path().join("agg");
    let w = tmp.path().join("w");
    init_wallet(&w);
    let c = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";
    let tb_before = {
        let agg = start_aggregator(&agg_dir);
        assert_eq!(
            pointer_json(&w, &agg, &["publish", "--cid", c])["version"],
            1
        );
        std::fs::read(&agg.trust_base).expect("trust base")
    };
    let agg = start_aggregator(&agg_dir);
    assert_eq!(
        std::fs::read(&agg.trust_base).expect("trust base"),
        tb_before
    );
    let found = pointer_json(&w, &agg, &["discover", "--no-fetch"]);
    assert_eq!(
        (found["cid"].as_str(), found["version"].as_u64()),
        (Some(c), Some(1))
    );
}

/// The commands as issue 6 spells them (`pointer publish --cid CID --aggregator URL`,
/// `pointer discover --aggregator URL`) work on the embedded defaults: the trust
/// base comes from the embedded aggregator's default dir, which does not follow
/// `SPHERE_DATA_DIR`, and without `--gateway` the CAR is not fetched (and it says so).
#[test]
fn the_issue_commands_work_on_the_embedded_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let (w1, w2) = (tmp.path().join("w1"), tmp.path().join("w2"));
    init_wallet(&w1);
    init_wallet(&w2);
    let env = |cmd: &mut Command, wallet: &Path| {
        cmd.env("HOME", &home)
            .env("SPHERE_DATA_DIR", wallet)
            .env_remove("SPHERE_TRUST_BASE")
            .env_remove("SPHERE_AGGREGATOR");
    };
    let mut cmd = bin();
    env(&mut cmd, &w1);
    let agg = spawn_aggregator(cmd);
    let agg_dir = home.join(".sphere-aggregator");
    assert_eq!(Path::new(&agg.trust_base), agg_dir.join("trust-base.json"));
    assert!(agg_dir.join("aggregator.db").exists());
    assert!(!w1.join("aggregator.db").exists(), "not in the wallet dir");
    let c = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";
    let run = |wallet: &Path, args: &[&str]| {
        let mut cmd = bin();
        env(&mut cmd, wallet);
        cmd.args(["--json", "pointer"])
            .args(args)
            .output()
            .expect("run")
    };
    let published = run(&w1, &["publish", "--cid", c, "--aggregator", &agg.url]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let published: Value = serde_json::from_slice(&published.stdout).expect("json");
    assert_eq!(published["version"], 1);
    let found = run(&w2, &["discover", "--aggregator", &agg.url]);
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let found: Value = serde_json::from_slice(&found.stdout).expect("json");
    assert_eq!(
        (found["cid"].as_str(), found["version"].as_u64()),
        (Some(c), Some(1))
    );
    assert_eq!(found["car"]["fetched"], false);
    assert_eq!(found["car"]["reason"], "no --gateway given");
    // Without the default file and without the flag, a clear user error.
    let mut cmd = bin();
    let none = cmd
        .env("HOME", tmp.path())
        .env_remove("SPHERE_TRUST_BASE")
        .arg("--data-dir")
        .arg(&w2)
        .args(["pointer", "discover", "--aggregator", &agg.url])
        .output()
        .expect("run");
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no trust base given"));
}

#[test]
fn a_second_aggregator_on_the_same_dir_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("agg");
    let _first = start_aggregator(&dir);
    let second = bin()
        .arg("--data-dir")
        .arg(&dir)
        .args(["aggregator", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another aggregator serves this dir") && err.contains("(pid "),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_user_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = tmp.path().join("w");
    init_wallet(&w);
    let run = |args: &[&str]| {
        bin()
            .arg("--data-dir")
            .arg(&w)
            .args(["pointer"])
            .args(args)
            .output()
            .expect("run")
    };
    let bad_cid = run(&[
        "publish",
        "--cid",
        "not-a-cid",
        "--aggregator",
        "http://127.0.0.1:9/",
        "--trust-base",
        "/nonexistent",
    ]);
    assert_eq!(bad_cid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_cid.stderr).contains("not a CID"));
    let no_tb = run(&[
        "discover",
        "--no-fetch",
        "--aggregator",
        "http://127.0.0.1:9/",
        "--trust-base",
        "/nonexistent",
    ]);
    assert_eq!(no_tb.status.code(), Some(1));
    let bad_version = run(&["inspect", "--version", "0"]);
    assert_eq!(bad_version.status.code(), Some(1));
    let ok = run(&["inspect", "--version", "1"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("side A: state id"));
}

#[test]
fn two_processes_racing_end_on_one_verified_pointer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let agg = start_aggregator(&tmp.path().join("agg"));
    let (w1, w2) = (tmp.path().join("w1"), tmp.path().join("w2"));
    init_wallet(&w1);
    init_wallet(&w2);
    let c1 = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";
    let c2 = "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae";
    let spawn = |dir: &Path, cid: &str| {
        bin()
            .arg("--data-dir")
            .arg(dir)
            .args(["--json", "pointer", "publish", "--cid", cid])
            .args(["--aggregator", &agg.url, "--trust-base", &agg.trust_base])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn publish")
    };
    let (p1, p2) = (spawn(&w1, c1), spawn(&w2, c2));
    let (o1, o2) = (
        p1.wait_with_output().expect("p1"),
        p2.wait_with_output().expect("p2"),
    );
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    assert!(
        o2.status.success(),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let r1: Value = serde_json::from_slice(&o1.stdout).expect("json");
    let r2: Value = serde_json::from_slice(&o2.stdout).expect("json");
    let (v1, v2) = (
        r1["version"].as_u64().expect("v"),
        r2["version"].as_u64().expect("v"),
    );
    assert_ne!(v1, v2, "both processes cannot own one version");
    let (latest, winner) = if v1 > v2 { (v1, c1) } else { (v2, c2) };
    for dir in [&w1, &w2] {
        let found = pointer_json(dir, &agg, &["discover", "--no-fetch"]);
        assert_eq!(
            (found["version"].as_u64(), found["cid"].as_str()),
            (Some(latest), Some(winner))
        );
    }
}
