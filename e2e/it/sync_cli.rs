//! Three device processes of one wallet on 127.0.0.1 write concurrently through
//! `kv put` (which goes through each device's running `sphere-cli sync`); one device
//! is killed with SIGKILL and restarted while the others write; at the end all three
//! hold identical state digests. The same again with half of all gossip dropped,
//! where only catch-up can converge.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{BIN, cli, dir_in, workdir};

const MNEMONIC: &str =
    "legal winner thank year wave sausage worth useful legal winner thank yellow";
/// How long the devices get to converge after the last write.
const DEADLINE: Duration = Duration::from_secs(90);
const WRITES_PER_DEVICE: usize = 30;

/// A running `sphere-cli sync`, killed (SIGKILL) when dropped.
struct SyncProcess {
    child: Child,
    addr: String,
}

impl SyncProcess {
    fn start(dir: &Path, peers: &[&str], drop_rate: f64) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--data-dir",
            &dir.display().to_string(),
            "--json",
            "sync",
            "--anti-entropy-ms",
            "400",
        ])
        .args(["--gossip-drop-rate", &drop_rate.to_string()]);
        for p in peers {
            cmd.args(["--peer", p]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sync printed no listen address");
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["event"], "listening", "{first}");
        Self {
            child,
            addr: v["addr"].as_str().unwrap().to_owned(),
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SyncProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn init(dir: &Path) {
    cli(dir, &["init", "--mnemonic-stdin", "--no-store-mnemonic"])
        .stdin(MNEMONIC)
        .run()
        .ok();
}

/// `kv put`, retried while the device is between processes (a write cut by the
/// SIGKILL may or may not have landed; putting the same value again is harmless).
fn put(dir: &Path, key: &str, value: &str) {
    let started = Instant::now();
    loop {
        let out = cli(dir, &["kv", "put", key, value]).run();
        if out.code() == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "put {key} kept failing: {}",
            out.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn digest(dir: &Path) -> Option<(String, u64)> {
    let out = cli(dir, &["--json", "kv", "digest"]).run();
    if out.code() != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).ok()?;
    Some((v["digest"].as_str()?.to_owned(), v["keys"].as_u64()?))
}

/// Polls the three digests until they agree on `keys` keys, or fails at the deadline.
fn wait_converged(dirs: &[PathBuf], keys: u64) {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < DEADLINE {
        last = dirs.iter().map(|d| digest(d)).collect::<Vec<_>>();
        if last
            .iter()
            .all(|d| d.as_ref().is_some_and(|(_, k)| *k == keys))
            && last.windows(2).all(|w| w[0] == w[1])
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no convergence within {DEADLINE:?}: {last:?}");
}

fn three_devices_with_a_crash(drop_rate: f64) {
    let work = workdir();
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir_in(&work, n)).collect();
    for d in &dirs {
        init(d);
    }
    let a = SyncProcess::start(&dirs[0], &[], drop_rate);
    let b = SyncProcess::start(&dirs[1], &[&a.addr], drop_rate);
    let c = SyncProcess::start(&dirs[2], &[&a.addr, &b.addr], drop_rate);
    let a_addr = a.addr.clone();

    std::thread::scope(|s| {
        for (i, dir) in dirs.iter().enumerate() {
            if i == 1 {
                continue;
            }
            s.spawn(move || {
                for n in 0..WRITES_PER_DEVICE {
                    put(
                        dir,
                        &format!("dev{i}.{n}"),
                        &format!("value {n} of device {i}"),
                    );
                }
            });
        }
        // Device b writes a third, is killed, writes a third with no node running
        // (straight into its store: local first), then restarts and writes the rest.
        let b_dir = &dirs[1];
        for n in 0..WRITES_PER_DEVICE / 3 {
            put(
                b_dir,
                &format!("dev1.{n}"),
                &format!("value {n} of device 1"),
            );
        }
        b.kill();
        for n in WRITES_PER_DEVICE / 3..2 * WRITES_PER_DEVICE / 3 {
            put(
                b_dir,
                &format!("dev1.{n}"),
                &format!("value {n} of device 1"),
            );
        }
        let b = SyncProcess::start(b_dir, &[&a_addr], drop_rate);
        for n in 2 * WRITES_PER_DEVICE / 3..WRITES_PER_DEVICE {
            put(
                b_dir,
                &format!("dev1.{n}"),
                &format!("value {n} of device 1"),
            );
        }
        wait_converged(&dirs, (3 * WRITES_PER_DEVICE) as u64);
        drop(b);
    });
    let value = cli(&dirs[2], &["kv", "get", "dev1.12"]).run().ok();
    assert_eq!(value.trim(), "value 12 of device 1");
    drop((a, c));
}

#[test]
fn three_processes_converge_after_a_kill_and_restart() {
    three_devices_with_a_crash(0.0);
}

#[test]
fn catch_up_converges_when_half_the_gossip_is_dropped() {
    three_devices_with_a_crash(0.5);
}

#[test]
fn a_second_sync_on_the_same_dir_is_refused() {
    let work = workdir();
    let dir = dir_in(&work, "solo");
    init(&dir);
    let _running = SyncProcess::start(&dir, &[], 0.0);
    let err = cli(&dir, &["sync"]).run().fails_with(1);
    assert!(err.contains("in use by another process"), "{err}");
    // Other commands go through the running node instead of failing on the lock.
    cli(&dir, &["kv", "put", "k", "v"]).run().ok();
    assert_eq!(cli(&dir, &["kv", "get", "k"]).run().ok().trim(), "v");
}

/// `status --json` of `dir`.
fn status(dir: &Path) -> serde_json::Value {
    cli(dir, &["--json", "status"]).run().json()
}

/// Polls `status` of `dir` until `done` holds for its `sync` object.
fn wait_status(dir: &Path, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let started = Instant::now();
    let mut last = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(60) {
        last = status(dir)["sync"].clone();
        if done(&last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("status never showed {what}: {last}");
}

/// The connected peer `peer` in a `sync` status object.
fn peer<'a>(sync: &'a serde_json::Value, peer: &str) -> Option<&'a serde_json::Value> {
    sync["peers"].as_array()?.iter().find(|p| p["peer"] == peer)
}

#[test]
fn status_shows_the_running_nodes_sync_status() {
    let work = workdir();
    let (a_dir, b_dir) = (dir_in(&work, "a"), dir_in(&work, "b"));
    init(&a_dir);
    init(&b_dir);
    // No node: said plainly, and the identity is still there.
    let idle = status(&a_dir);
    assert!(idle["sync"].is_null(), "{idle}");
    assert!(idle["address_id"].is_string(), "{idle}");
    let text = cli(&a_dir, &["status"]).run().ok();
    assert!(text.contains("sync:           not running"), "{text}");

    let a = SyncProcess::start(&a_dir, &[], 0.0);
    let a_id = a.addr.rsplit('/').next().unwrap().to_owned();
    let sync = status(&a_dir)["sync"].clone();
    assert_eq!(sync["peer_id"], a_id.as_str(), "{sync}");
    assert_eq!(sync["listen"], serde_json::json!([a.addr]), "{sync}");
    assert_eq!(sync["peers"], serde_json::json!([]), "{sync}");
    for counter in ["entries_in", "entries_out", "entries_served"] {
        assert_eq!(sync[counter], 0, "{counter}: {sync}");
    }
    assert_eq!(sync["rejected"], serde_json::json!({}), "{sync}");
    let text = cli(&a_dir, &["status"]).run().ok();
    assert!(
        text.contains(&format!("sync:           running, peer id {a_id}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("listening on:   {}", a.addr)),
        "{text}"
    );

    let b = SyncProcess::start(&b_dir, &[&a.addr], 0.0);
    let b_id = b.addr.rsplit('/').next().unwrap().to_owned();
    // Both see each other as a device of the wallet once B joined the topic.
    wait_status(&a_dir, "b as a wallet peer", |s| {
        peer(s, &b_id).is_some_and(|p| p["wallet_peer"] == true)
    });
    wait_status(&b_dir, "a as a wallet peer", |s| {
        peer(s, &a_id).is_some_and(|p| p["wallet_peer"] == true)
    });
    // A write on A (through its node) reaches B by gossip or catch-up: A counts it
    // out or served, B counts it in.
    put(&a_dir, "status/k", "v");
    let started = Instant::now();
    while cli(&b_dir, &["kv", "get", "status/k"]).run().code() != 0 {
        assert!(started.elapsed() < DEADLINE, "the write never reached b");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_status(&b_dir, "an entry in", |s| {
        s["entries_in"].as_u64() >= Some(1)
    });
    wait_status(&a_dir, "an entry out or served", |s| {
        s["entries_out"].as_u64().unwrap_or(0) + s["entries_served"].as_u64().unwrap_or(0) >= 1
    });
    // Anti-entropy (every 400 ms here) ends with a completed catch-up with A.
    wait_status(&b_dir, "a catch-up with a", |s| {
        peer(s, &a_id).is_some_and(|p| p["last_catchup_ms"].as_u64().is_some())
    });
    let sync = status(&b_dir)["sync"].clone();
    assert_eq!(peer(&sync, &a_id).unwrap()["strikes"], 0, "{sync}");
    assert_eq!(sync["rejected"], serde_json::json!({}), "{sync}");

    // A node killed outright leaves its socket file behind: that is "not running".
    a.kill();
    assert!(a_dir.join("sync.sock").exists());
    assert!(status(&a_dir)["sync"].is_null());
    drop(b);
}

#[test]
fn a_listing_longer_than_a_control_line_works_through_the_node() {
    let work = workdir();
    let dir = dir_in(&work, "big");
    init(&dir);
    // 9 values of 256 KiB: 4.5 MiB as hex, over twice the 2 MiB line limit.
    for i in 0..9u8 {
        let value: Vec<u8> = (0..262_144u32)
            .map(|j| (j % 251) as u8 ^ i.wrapping_mul(37))
            .collect();
        let file = work.path().join(format!("v{i}"));
        std::fs::write(&file, value).unwrap();
        cli(
            &dir,
            &[
                "kv",
                "put",
                &format!("big/{i}"),
                "--file",
                &file.display().to_string(),
            ],
        )
        .run()
        .ok();
    }
    cli(&dir, &["kv", "put", "other", "x"]).run().ok();
    let local_json = cli(&dir, &["--json", "kv", "list", "big/"]).run().json();
    let local_text = cli(&dir, &["kv", "list"]).run().ok();
    assert_eq!(local_json["count"], 9);

    let _node = SyncProcess::start(&dir, &[], 0.0);
    // The node holds the lock now, so these go through its control socket.
    let err = cli(&dir, &["kv", "crash-writer", "--count", "1"])
        .run()
        .fails_with(1);
    assert!(err.contains("stop `sphere-cli sync` first"), "{err}");
    assert_eq!(
        cli(&dir, &["--json", "kv", "list", "big/"]).run().json(),
        local_json
    );
    assert_eq!(cli(&dir, &["kv", "list"]).run().ok(), local_text);
}
