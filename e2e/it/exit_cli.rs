//! Exit codes and robustness across commands (issue 2: 0 ok, 1 user error, 2
//! internal): one table of user errors run through the binary, each with and
//! without `--json`; paths that are not UTF-8 everywhere a path is printed; `init`
//! never leaving a wallet whose new mnemonic nobody saw; `kv put` reading standard
//! input before it locks the data dir; the mnemonic-on-stdin limit.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use multihash_codetable::{Code, MultihashDigest};
use serde_json::Value;

use crate::harness::BIN;
use crate::pointer_cli::{init_wallet, start_aggregator};
use crate::uxf_cli::golden;

/// `sphere-cli ARGS` in a clean environment (no inherited `SPHERE_*`), with `stdin`
/// fed and closed (or an empty standard input).
fn run<S: AsRef<OsStr>>(args: &[S], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"SPHERE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // The command may stop reading early (that is what some cases test).
        let _ = pipe.write_all(bytes);
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `name` followed by a byte that is never UTF-8.
fn not_utf8(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0xff);
    dir.join(OsString::from_vec(bytes))
}

/// A long-running command (gateway, aggregator, sync) and its first stdout line;
/// killed when dropped.
struct Daemon {
    child: Child,
    first_line: String,
}

impl Daemon {
    fn start<S: AsRef<OsStr>>(args: &[S]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("SPHERE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        assert!(!first_line.is_empty(), "{shown:?} printed nothing");
        Self { child, first_line }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.first_line)
            .unwrap_or_else(|e| panic!("first line {:?} is not JSON: {e}", self.first_line))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A raw-codec CID whose multihash is sha2-512: 68 bytes, more than a pointer
/// carries (63).
fn sha512_cid() -> String {
    cid::Cid::new_v1(0x55, Code::Sha2_512.digest(b"too long for a pointer")).to_string()
}

/// One user error after another, each exit 1 with an `error:` line and no panic,
/// and with `--json` also the `{error, causes, exit_code: 1}` object on stdout.
#[test]
fn user_errors_exit_1_with_and_without_json() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let wallet = w.join("wallet");
    init_wallet(&wallet);
    let garbage = w.join("garbage.car");
    std::fs::write(&garbage, b"this is not a CAR file").unwrap();
    let missing = w.join("missing.car").display().to_string();
    let (garbage, wallet_s) = (garbage.display().to_string(), wallet.display().to_string());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let busy_addr = format!("127.0.0.1:{busy_port}");
    let agg = start_aggregator(&w.join("agg"));
    // Nothing listens here: no case below may get as far as the network.
    let dead = "http://127.0.0.1:9/";
    let sha512 = sha512_cid();
    let sha256 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let cid_v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    let identity = "bafkqaaa";
    let long_key = "k".repeat(2000);
    let fresh = |n: &str| w.join(n).display().to_string();
    let (d_index, d_utf8, d_long) = (fresh("index"), fresh("utf8"), fresh("long"));
    let tcp_busy = format!("/ip4/127.0.0.1/tcp/{busy_port}");
    let long_input = vec![b'a'; 5000];
    let token = golden().join("inputs/token-A.json").display().to_string();
    let good_car = fresh("good.car");
    let packed = run(&["uxf", "pack", &token, "-o", &good_car], None);
    assert_eq!(packed.status.code(), Some(0), "{}", text(&packed.stderr));

    type Case<'a> = (&'a str, Vec<String>, Option<&'a [u8]>);
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let cases: Vec<Case<'_>> = vec![
        ("unknown subcommand", s(&["bogus"]), None),
        ("unknown flag", s(&["status", "--bogus"]), None),
        ("no subcommand", s(&[]), None),
        (
            "address index ≥ 2^31",
            s(&[
                "--data-dir",
                &d_index,
                "init",
                "--no-store-mnemonic",
                "--address-index",
                "2147483648",
            ]),
            None,
        ),
        (
            "mnemonic on stdin not UTF-8",
            s(&[
                "--data-dir",
                &d_utf8,
                "init",
                "--mnemonic-stdin",
                "--no-store-mnemonic",
            ]),
            Some(b"\xff\xfe abandon\n"),
        ),
        (
            "mnemonic on stdin over 4 KiB",
            s(&[
                "--data-dir",
                &d_long,
                "init",
                "--mnemonic-stdin",
                "--no-store-mnemonic",
            ]),
            Some(&long_input),
        ),
        (
            "uxf pack of a missing file",
            s(&["uxf", "pack", &missing, "-o", &fresh("out.car")]),
            None,
        ),
        (
            "uxf pack into a directory that does not exist",
            s(&["uxf", "pack", &token, "-o", &fresh("no-such-dir/out.car")]),
            None,
        ),
        (
            "uxf unpack into a path where a file is in the way",
            s(&["uxf", "unpack", &good_car, "-o", &garbage]),
            None,
        ),
        (
            "uxf verify of a missing file",
            s(&["uxf", "verify", &missing]),
            None,
        ),
        (
            "uxf inspect of a missing file",
            s(&["uxf", "inspect", &missing]),
            None,
        ),
        (
            "uxf unpack of a missing file",
            s(&["uxf", "unpack", &missing, "-o", &fresh("out")]),
            None,
        ),
        (
            "uxf verify of an invalid CAR",
            s(&["uxf", "verify", &garbage]),
            None,
        ),
        (
            "ipfs pin of a missing file",
            s(&["ipfs", "pin", &missing, "--gateway", dead]),
            None,
        ),
        (
            "ipfs pin of an invalid CAR",
            s(&["ipfs", "pin", &garbage, "--gateway", dead]),
            None,
        ),
        (
            "ipfs has of a CIDv0",
            s(&["ipfs", "has", cid_v0, "--gateway", dead]),
            None,
        ),
        (
            "ipfs has of an identity CID",
            s(&["ipfs", "has", identity, "--gateway", dead]),
            None,
        ),
        (
            "ipfs fetch of a CIDv0",
            s(&[
                "ipfs",
                "fetch",
                cid_v0,
                "-o",
                &fresh("f.car"),
                "--gateway",
                dead,
            ]),
            None,
        ),
        (
            "ipfs fetch of an identity CID",
            s(&[
                "ipfs",
                "fetch",
                identity,
                "-o",
                &fresh("f.car"),
                "--gateway",
                dead,
            ]),
            None,
        ),
        (
            "kv put of a missing file",
            s(&[
                "--data-dir",
                &wallet_s,
                "kv",
                "put",
                "k",
                "--file",
                &missing,
            ]),
            None,
        ),
        (
            "kv put of a key over the limit",
            s(&["--data-dir", &wallet_s, "kv", "put", &long_key, "v"]),
            None,
        ),
        (
            "pointer publish of a 68-byte CID",
            s(&[
                "--data-dir",
                &wallet_s,
                "pointer",
                "publish",
                "--cid",
                &sha512,
                "--aggregator",
                dead,
                "--trust-base",
                &agg.trust_base,
            ]),
            None,
        ),
        (
            "pointer inspect of a 68-byte CID",
            s(&[
                "--data-dir",
                &wallet_s,
                "pointer",
                "inspect",
                "--version",
                "1",
                "--cid",
                &sha512,
            ]),
            None,
        ),
        (
            "pointer publish to a non-URL aggregator",
            s(&[
                "--data-dir",
                &wallet_s,
                "pointer",
                "publish",
                "--cid",
                sha256,
                "--aggregator",
                "notaurl",
                "--trust-base",
                &agg.trust_base,
            ]),
            None,
        ),
        (
            "sync on a busy port",
            s(&["--data-dir", &wallet_s, "sync", "--listen", &tcp_busy]),
            None,
        ),
        (
            "sync on UDP",
            s(&[
                "--data-dir",
                &wallet_s,
                "sync",
                "--listen",
                "/ip4/127.0.0.1/udp/0",
            ]),
            None,
        ),
        (
            "aggregator on a busy port",
            s(&[
                "--data-dir",
                &fresh("agg2"),
                "aggregator",
                "--listen",
                &busy_addr,
            ]),
            None,
        ),
        (
            "gateway on a busy port",
            s(&[
                "--data-dir",
                &fresh("gw"),
                "gateway",
                "--listen",
                &busy_addr,
            ]),
            None,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, args, stdin) in &cases {
        for json in [false, true] {
            let mut all = args.clone();
            if json {
                all.insert(0, "--json".to_owned());
            }
            let out = run(&all, *stdin);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let problem = if out.status.code() != Some(1) {
                Some(format!("exit {:?}", out.status.code()))
            } else if stderr.contains("panicked") {
                Some("panicked".to_owned())
            } else if !(stderr.contains("error: ")
                // Bare `sphere-cli` shows the help (on stderr) as its error.
                || (args.is_empty() && stderr.contains("Usage:")))
            {
                Some("no `error:` line".to_owned())
            } else if json {
                match stdout.lines().last().map(serde_json::from_str::<Value>) {
                    Some(Ok(v))
                        if v["exit_code"] == 1
                            && v["error"].is_string()
                            && v["causes"].is_array() =>
                    {
                        None
                    }
                    _ => Some("no JSON error object on stdout".to_owned()),
                }
            } else {
                None
            };
            if let Some(p) = problem {
                wrong.push(format!(
                    "{name} (json: {json}): {p}\n  stdout: {stdout}\n  stderr: {stderr}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The refusals above created nothing.
    for d in [&d_index, &d_utf8, &d_long] {
        assert!(
            !Path::new(d).join("wallet.json").exists(),
            "{d} holds a wallet"
        );
    }
    // A busy port is named with its cause, not an empty reason.
    let out = run(
        &s(&["--data-dir", &wallet_s, "sync", "--listen", &tcp_busy]),
        None,
    );
    let err = text(&out.stderr);
    assert!(err.contains("in use"), "the cause is named: {err}");
    drop(busy);
}

/// `--help` and `--version` are not errors: stdout, exit 0.
#[test]
fn help_and_version_exit_0_on_stdout() {
    for args in [&["--help"][..], &["--version"], &["init", "--help"]] {
        let out = run(args, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed on stdout");
    }
}

/// A write the running sync node refuses as invalid is exit 1, as it is without
/// the node (the node says whose fault it was).
#[test]
fn a_write_refused_through_the_sync_node_is_a_user_error() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    init_wallet(&dir);
    let _node = Daemon::start(&[
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("sync"),
    ]);
    let long_key = "k".repeat(2000);
    let mut args = vec![OsString::from("--data-dir"), dir.clone().into_os_string()];
    args.extend(os(&["--json", "kv", "put", &long_key, "v"]));
    let out = run(&args, None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused"), "through the node: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 1);
    // A valid write still goes through.
    let mut args = vec![OsString::from("--data-dir"), dir.into_os_string()];
    args.extend(os(&["kv", "put", "k", "v"]));
    assert_eq!(run(&args, None).status.code(), Some(0));
}

fn ok_json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// Every command that prints a path, given paths that are not UTF-8: `init` (the
/// mnemonic is shown), `status`, `uxf pack -o`, `uxf unpack -o`, `gateway`,
/// `aggregator`, `ipfs fetch -o`, `pointer discover --out`, each with `--json`.
#[test]
fn paths_that_are_not_utf8_are_printed_not_panicked_on() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = not_utf8(w, "wallet");
    let with_dir = |dir: &Path, rest: &[&str]| {
        let mut a = vec![
            OsString::from("--json"),
            OsString::from("--data-dir"),
            dir.as_os_str().to_owned(),
        ];
        a.extend(os(rest));
        a
    };

    let init = ok_json(&run(
        &with_dir(&dir, &["init", "--no-store-mnemonic"]),
        None,
    ));
    assert_eq!(
        init["mnemonic"].as_str().unwrap().split(' ').count(),
        24,
        "{init}"
    );
    assert!(
        init["data_dir"].as_str().unwrap().contains('\u{fffd}'),
        "{init}"
    );
    assert!(dir.join("wallet.json").exists());
    let status = ok_json(&run(&with_dir(&dir, &["status"]), None));
    assert_eq!(status["address_id"], init["address_id"]);
    // Human output too.
    let mut human = vec![OsString::from("--data-dir"), dir.as_os_str().to_owned()];
    human.push("status".into());
    assert_eq!(run(&human, None).status.code(), Some(0));

    let token = golden().join("inputs/token-A.json");
    let car = not_utf8(w, "bundle.car");
    let mut pack = os(&["--json", "uxf", "pack"]);
    pack.extend([
        token.into_os_string(),
        "-o".into(),
        car.clone().into_os_string(),
    ]);
    pack.extend(os(&["--created-at", "1"]));
    let packed = ok_json(&run(&pack, None));
    assert!(packed["output"].as_str().unwrap().contains('\u{fffd}'));
    let root = packed["root"].as_str().unwrap().to_owned();
    let out_dir = not_utf8(w, "tokens");
    let mut unpack = os(&["--json", "uxf", "unpack"]);
    unpack.extend([
        car.clone().into_os_string(),
        "-o".into(),
        out_dir.into_os_string(),
    ]);
    let unpacked = ok_json(&run(&unpack, None));
    assert_eq!(unpacked["tokens"], 1);

    let gw_dir = not_utf8(w, "gateway");
    let gw = Daemon::start(&with_dir(&gw_dir, &["gateway", "--listen", "127.0.0.1:0"]));
    let gw_url = gw.json()["listening"].as_str().unwrap().to_owned();
    assert!(gw.json()["db"].as_str().unwrap().contains('\u{fffd}'));

    let agg_dir = not_utf8(w, "aggregator");
    let agg = Daemon::start(&with_dir(
        &agg_dir,
        &["aggregator", "--listen", "127.0.0.1:0", "--round-ms", "50"],
    ));
    let agg_url = agg.json()["url"].as_str().unwrap().to_owned();
    let trust_base = agg_dir.join("trust-base.json");
    assert!(trust_base.exists());

    let mut pin = os(&["--json", "ipfs", "pin"]);
    pin.extend([car.into_os_string()]);
    pin.extend(os(&["--gateway", &gw_url]));
    ok_json(&run(&pin, None));
    let fetched = not_utf8(w, "fetched.car");
    let mut fetch = os(&["--json", "ipfs", "fetch", &root, "-o"]);
    fetch.extend([fetched.clone().into_os_string()]);
    fetch.extend(os(&["--gateway", &gw_url]));
    let f = ok_json(&run(&fetch, None));
    assert!(f["output"].as_str().unwrap().contains('\u{fffd}'));
    assert!(fetched.exists());

    let net = |cmd: &[&str]| {
        let mut a = with_dir(&dir, cmd);
        a.extend(os(&["--aggregator", &agg_url, "--trust-base"]));
        a.push(trust_base.clone().into_os_string());
        a
    };
    ok_json(&run(&net(&["pointer", "publish", "--cid", &root]), None));
    let snapshot = not_utf8(w, "snapshot.car");
    let mut discover = net(&["pointer", "discover", "--gateway", &gw_url]);
    discover.extend(["--out".into(), snapshot.clone().into_os_string()]);
    let d = ok_json(&run(&discover, None));
    assert_eq!(d["cid"], root.as_str(), "{d}");
    assert!(
        d["car"]["output"].as_str().unwrap().contains('\u{fffd}'),
        "{d}"
    );
    assert!(snapshot.exists());
}

/// A new mnemonic that is not stored and cannot be written out must not leave a
/// wallet behind: `init --no-store-mnemonic > /dev/full` fails (exit 2) and the dir
/// holds no wallet; `init` then works.
#[test]
fn init_removes_the_wallet_when_its_unstored_mnemonic_cannot_be_shown() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["init", "--no-store-mnemonic"])
        .env_remove("SPHERE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("mnemonic"), "says why: {err}");
    assert!(
        !dir.join("wallet.json").exists(),
        "no wallet without its mnemonic"
    );
    assert!(!dir.join("keys.json").exists());
    let mut args = vec![OsString::from("--data-dir"), dir.into_os_string()];
    args.extend(os(&["--json", "init", "--no-store-mnemonic"]));
    let v = ok_json(&run(&args, None));
    assert!(v["mnemonic"].is_string());
}

/// `init --mnemonic-stdin` stops reading one byte past its 4 KiB limit: an endless
/// input is refused (exit 1) after a few KiB, not buffered.
#[test]
fn an_endless_mnemonic_on_stdin_is_refused_early() {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(work.path().join("w"))
        .args(["init", "--mnemonic-stdin", "--no-store-mnemonic"])
        .env_remove("SPHERE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = [b'a'; 64 * 1024];
        let mut written = 0usize;
        // Up to 1 GiB; stops as soon as the reader has gone away.
        while written < 1 << 30 {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("too long"), "{err}");
    assert!(
        written < 16 << 20,
        "stdin was drained: {written} bytes written"
    );
}

/// `kv put KEY` reads its value before locking the data dir: while it waits on
/// standard input, other commands use the dir.
#[test]
fn kv_put_from_stdin_does_not_hold_the_lock_while_reading() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    init_wallet(&dir);

    let mut slow = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["kv", "put", "slow"])
        .env_remove("SPHERE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = slow.stdin.take().unwrap();
    stdin.write_all(b"first half, ").unwrap();
    // Give the slow writer's process time to start and (formerly) take the lock.
    let started = Instant::now();
    let mut args = vec![OsString::from("--data-dir"), dir.clone().into_os_string()];
    args.extend(os(&["kv", "put", "other", "v"]));
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let out = run(&args, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "a put while another waits on stdin: {}",
            text(&out.stderr)
        );
        if started.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    stdin.write_all(b"second half").unwrap();
    drop(stdin);
    let out = slow.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut get = vec![OsString::from("--data-dir"), dir.into_os_string()];
    get.extend(os(&["kv", "get", "slow"]));
    assert_eq!(
        text(&run(&get, None).stdout).trim(),
        "first half, second half"
    );
}
