//! The only place that prints. Human text by default, one JSON object per command
//! with `--json`; hints and warnings go to stderr and are hidden by `--quiet`
//! (warnings that protect the user, such as "write down your mnemonic", are not).

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::args::GlobalArgs;

/// A path as a JSON string. Paths are bytes on Unix and need not be UTF-8, which
/// `serde_json` refuses (and `json!` then panics on), so a path is rendered as its
/// `display()` text: invalid UTF-8 becomes U+FFFD, the same text the human output
/// shows.
pub(crate) fn path_json(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

/// Where and how output goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    json: bool,
    quiet: bool,
}

impl Printer {
    pub(crate) fn new(global: &GlobalArgs) -> Self {
        Self {
            json: global.json,
            quiet: global.quiet,
        }
    }

    /// A command's result: `human` lines as text, or `json` as one object.
    pub(crate) fn result(&self, human: &str, json: &Value) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, json)?;
            writeln!(out)?;
        } else {
            out.write_all(human.as_bytes())?;
            if !human.ends_with('\n') {
                writeln!(out)?;
            }
        }
        out.flush()
    }

    /// Whether `--json` was given.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// A live status line on stderr, or `None` under --quiet, --json, or when stderr
    /// is not a terminal.
    pub(crate) fn status_line(&self) -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(bar)
    }

    /// A notable event for people: above the status line when there is one, else a
    /// hint on stderr.
    pub(crate) fn note(&self, line: &Option<indicatif::ProgressBar>, text: &str) {
        match line {
            Some(bar) => bar.suspend(|| self.hint(text)),
            None => self.hint(text),
        }
    }

    /// A hint for people (stderr; hidden by --quiet and --json).
    pub(crate) fn hint(&self, text: &str) {
        if !self.quiet && !self.json {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }

    /// A line for people above a [`Printer::spinner`]: printed even when the spinner
    /// is hidden because stderr is not a terminal (indicatif drops `println` then);
    /// hidden by --quiet and --json like every hint.
    pub(crate) fn above(&self, pb: &indicatif::ProgressBar, text: &str) {
        pb.suspend(|| self.hint(text));
    }

    /// A progress spinner on stderr, hidden under --quiet and --json (and by
    /// indicatif itself when stderr is not a terminal).
    pub(crate) fn spinner(&self) -> indicatif::ProgressBar {
        if self.quiet || self.json {
            return indicatif::ProgressBar::hidden();
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    }

    /// A warning that must be seen (stderr; shown even with --quiet).
    pub(crate) fn warn(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "warning: {text}");
    }

    /// An error with its cause chain (stderr; JSON object on stdout with --json).
    pub(crate) fn error(&self, err: &anyhow::Error, code: u8) {
        let causes = distinct_causes(err);
        if self.json {
            error_json(&err.to_string(), &causes, code);
        }
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "error: {err}");
        for cause in &causes {
            let _ = write!(e, "\n  caused by: {cause}");
        }
        let _ = writeln!(e);
    }
}

/// The causes of `err` worth printing under it. Many errors put their source's text in
/// their own message *and* return it as `source()`; a cause whose text the line above
/// already holds is left out, so nothing is said twice.
fn distinct_causes(err: &anyhow::Error) -> Vec<String> {
    let mut shown = err.to_string();
    let mut causes = Vec::new();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        shown.clone_from(&text);
        causes.push(text);
    }
    causes
}

/// The `--json` error object on stdout: `{"error", "causes", "exit_code"}`.
pub(crate) fn error_json(error: &str, causes: &[String], code: u8) {
    let v = serde_json::json!({"error": error, "causes": causes, "exit_code": code});
    let _ = writeln!(std::io::stdout(), "{v}");
}

#[cfg(test)]
mod tests {
    use super::distinct_causes;

    /// An error that says its source's text and also returns it as `source()`.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "invalid write: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_line_above_already_says_is_left_out() {
        let io = std::io::Error::other("key longer than 1024 bytes");
        let err = anyhow::Error::new(Repeats(io)).context("kv put");
        assert_eq!(
            distinct_causes(&err),
            vec!["invalid write: key longer than 1024 bytes".to_owned()]
        );
        // a cause with its own text is kept
        let err = anyhow::Error::new(std::io::Error::other("disk full")).context("kv put");
        assert_eq!(distinct_causes(&err), vec!["disk full".to_owned()]);
    }
}
