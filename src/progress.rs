//! Progress of long work (a big `job apply`, `dlq replay`/`purge` of many
//! letters) on stderr, only when stderr is a terminal: piped or redirected,
//! a command prints only its result.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this many items, no bar: it would flash and vanish.
const MIN_ITEMS: u64 = 1_000;

/// A bar of `len` items labelled `what`, or a hidden one (not a terminal,
/// or too little work).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if len < MIN_ITEMS || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
