//! `sphere-cli kv` end to end (issue 4): put/get/del/list with values from an
//! argument, a file and stdin, `--json`, the one-process lock naming the holder's
//! pid, and the kill -9 crash test (no acknowledged put is lost, the database passes
//! `PRAGMA integrity_check`).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers abort the test on any failure"
)]

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sphere_profile::datadir::DataDir;
use sphere_profile::oplog::{Store, StoreConfig};

fn cli(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sphere-cli"));
    c.arg("--data-dir").arg(dir).env_remove("SPHERE_DATA_DIR");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir).args(args).stdin(Stdio::null()).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn init(dir: &Path) {
    let out = run(
        dir,
        &["--json", "init", "--no-store-mnemonic", "--words", "12"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[test]
fn kv_put_get_del_list_with_every_value_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    init(&dir);

    // From an argument.
    let put = json(&run(
        &dir,
        &["--json", "kv", "put", "settings.theme", "dark"],
    ));
    assert_eq!(put["key"], "settings.theme");
    assert_eq!(put["seq"], 1);
    assert!(put["entry"].as_str().unwrap().starts_with("bafyrei"));
    // From a file (binary).
    let file = tmp.path().join("blob");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    let f = file.to_str().unwrap();
    json(&run(
        &dir,
        &["--json", "kv", "put", "settings.blob", "--file", f],
    ));
    // From stdin.
    let mut child = cli(&dir)
        .args(["--json", "kv", "put", "settings.lang"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"en-GB").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(json(&out)["bytes"], 5);

    let got = json(&run(&dir, &["--json", "kv", "get", "settings.lang"]));
    assert_eq!(got["value"], "en-GB");
    let human = run(&dir, &["kv", "get", "settings.theme"]);
    assert_eq!(String::from_utf8(human.stdout).unwrap(), "dark\n");
    let blob = json(&run(&dir, &["--json", "kv", "get", "settings.blob"]));
    assert_eq!(blob["value"], Value::Null);
    assert_eq!(blob["value_hex"], "009f9296");

    let list = json(&run(&dir, &["--json", "kv", "list", "settings."]));
    assert_eq!(list["count"], 3);
    let keys: Vec<&str> = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["settings.blob", "settings.lang", "settings.theme"]);

    let del = json(&run(&dir, &["--json", "kv", "del", "settings.theme"]));
    assert_eq!(del["existed"], true);
    let missing = run(&dir, &["kv", "get", "settings.theme"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("key not found"));
    let list = json(&run(&dir, &["--json", "kv", "list"]));
    assert_eq!(list["count"], 2);

    // Over the value limit: a user error, nothing written.
    let big = tmp.path().join("big");
    std::fs::write(&big, vec![b'x'; sphere_profile::oplog::MAX_VALUE_BYTES + 1]).unwrap();
    let out = run(&dir, &["kv", "put", "big", "--file", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // Without a wallet: a user error.
    let out = run(&tmp.path().join("nothing"), &["kv", "list"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Reads complete lines until `want` acks or EOF; returns the acked keys.
fn read_acks(reader: &mut impl BufRead, want: Option<usize>, acked: &mut Vec<String>) {
    let mut line = String::new();
    loop {
        if want.is_some_and(|w| acked.len() >= w) {
            return;
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') => return, // cut by the kill
            Ok(_) => {
                let v: Value = serde_json::from_str(line.trim_end()).unwrap();
                acked.push(v["ack"].as_str().unwrap().to_owned());
            }
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_put() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    init(&dir);
    let mut all: Vec<String> = Vec::new();
    let rounds = 20;
    for round in 0..rounds {
        let mut child = cli(&dir)
            .args(["--json", "kv", "crash-writer", "--writers", "8", "--tag"])
            .arg(round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        // Kill at a random point: after 1..=4000 acknowledged puts.
        let target = 1 + usize::try_from(random() % 4000).unwrap();
        read_acks(&mut out, Some(1), &mut acked);
        assert_eq!(acked.len(), 1, "the writer acknowledged nothing");
        if round == 0 {
            // The lock is held: a second process gets a clear error naming the pid.
            let second = run(&dir, &["kv", "get", "anything"]);
            assert_eq!(second.status.code(), Some(1));
            let err = String::from_utf8_lossy(&second.stderr);
            assert!(
                err.contains(&format!("in use by another process (pid {})", child.id())),
                "{err}"
            );
        }
        read_acks(&mut out, Some(target), &mut acked);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Lines the child printed before it died were acknowledged too.
        read_acks(&mut out, None, &mut acked);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!err.contains("panicked"), "{err}");

        let store =
            Store::open_data_dir(DataDir::open(&dir).unwrap(), StoreConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(store.integrity_check().await.unwrap().is_empty());
            for k in &acked {
                let v = store.get(k).await.unwrap();
                assert_eq!(
                    v,
                    Some(format!("value of {k}").into_bytes()),
                    "lost {k} in round {round}"
                );
            }
            if round == rounds - 1 {
                let unique: HashSet<&String> = all.iter().chain(&acked).collect();
                for k in unique {
                    assert!(store.get(k).await.unwrap().is_some(), "lost {k}");
                }
            }
            store.shutdown().await.unwrap();
        });
        all.extend(acked);
    }
    assert!(all.len() >= rounds);
}
