//! Locating the shared specs and golden vectors (`../shared` beside the repo, or
//! `SPHERE_SHARED_DIR`).

use std::path::PathBuf;

/// The shared dir: `SPHERE_SHARED_DIR`, else `<repo>/../shared`.
pub(crate) fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPHERE_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Reads a shared file as text; panics with the path when it is missing, because a
/// golden-vector test that cannot find its vectors must fail, not skip.
pub(crate) fn read_shared(relative: &str) -> String {
    let path = shared_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Reads a JSON file of this repository's own vectors (`tests/vectors/`).
pub(crate) fn read_repo_vectors(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Returns the text between the first `start` after `anchor` and the next `end`.
pub(crate) fn between<'a>(text: &'a str, anchor: &str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(anchor)
        .unwrap_or_else(|| panic!("anchor {anchor:?} not found"));
    let rest = &text[from + anchor.len()..];
    let s = rest
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found after {anchor:?}"))
        + start.len();
    let e = rest[s..]
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} not found after {anchor:?}"));
    &rest[s..s + e]
}
