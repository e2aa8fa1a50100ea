//! Progress on standard error: an indicatif bar (rate and ETA) on a terminal, a plain line
//! every 10 seconds and at the end otherwise (logs, batch jobs), nothing with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain lines when standard error is not a terminal.
const LINE_EVERY: f64 = 10.0;

pub(crate) struct Progress {
    total: usize,
    /// What is counted ("archs" for `score`).
    unit: &'static str,
    done: usize,
    start: Instant,
    last: Instant,
    how: Show,
}

enum Show {
    Nothing,
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    pub(crate) fn new(total: usize, quiet: bool) -> Progress {
        Progress::with_unit(total, quiet, "archs")
    }

    pub(crate) fn with_unit(total: usize, quiet: bool, unit: &'static str) -> Progress {
        let how = if quiet {
            Show::Nothing
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(5),
            );
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{pos}}/{{len}} {unit}, {{per_sec}}, elapsed {{elapsed}}, eta {{eta}}"
                ))
                .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            Show::Bar(bar)
        } else {
            Show::Lines
        };
        Progress {
            total,
            unit,
            done: 0,
            start: Instant::now(),
            last: Instant::now(),
            how,
        }
    }

    pub(crate) fn tick(&mut self) {
        self.done += 1;
        match &self.how {
            Show::Nothing => {}
            Show::Bar(bar) => bar.inc(1),
            Show::Lines => {
                if self.last.elapsed().as_secs_f64() >= LINE_EVERY || self.done == self.total {
                    self.last = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// `done/total unit, rate unit/s, elapsed s, eta s`.
    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / elapsed.max(1e-9);
        let eta = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
        format!(
            "{}/{} {unit}, {rate:.2} {unit}/s, elapsed {elapsed:.0} s, eta {eta:.0} s",
            self.done,
            self.total,
            unit = self.unit
        )
    }

    pub(crate) fn finish(&self) {
        if let Show::Bar(bar) = &self.how {
            bar.finish();
        }
    }
}
