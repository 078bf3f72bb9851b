//! Progress of a long command: a bar on a terminal, a line per step otherwise (CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Counts steps of known total and shows what the last one measured.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    label: String,
}

impl Progress {
    /// A progress display of `total` steps named `label`.
    pub fn new(label: &str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
                    .expect("valid template")
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Self { bar, total, done: 0, label: label.to_string() }
    }

    /// Marks a step done, with what it measured.
    pub fn step(&mut self, message: String) {
        self.done += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_message(message);
                bar.inc(1);
            }
            None => eprintln!("{} [{}/{}] {message}", self.label, self.done, self.total),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
