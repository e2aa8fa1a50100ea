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
    /// Items that cost time (archs to score, not rows copied from their class), when
    /// known: the ETA then counts those alone.
    work_total: Option<usize>,
    work_done: usize,
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
                    "{{bar:30}} {{pos}}/{{len}} {unit}, {{per_sec}}, elapsed {{elapsed}}, {{msg}}"
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
            work_total: None,
            work_done: 0,
            start: Instant::now(),
            last: Instant::now(),
            how,
        }
    }

    /// Of the items, `work` cost time (the others are nearly free): the ETA is then
    /// elapsed time per costly item done times the costly items left.
    pub(crate) fn set_work(&mut self, work: usize) {
        self.work_total = Some(work);
    }

    pub(crate) fn tick(&mut self) {
        self.tick_item(true);
    }

    /// One item done; `costly` says whether it counts as work (see [`Progress::set_work`]).
    pub(crate) fn tick_item(&mut self, costly: bool) {
        self.done += 1;
        self.work_done += usize::from(costly);
        match &self.how {
            Show::Nothing => {}
            Show::Bar(bar) => {
                bar.inc(1);
                bar.set_message(format!("eta {:.0} s", self.eta()));
            }
            Show::Lines => {
                if self.last.elapsed().as_secs_f64() >= LINE_EVERY || self.done == self.total {
                    self.last = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Seconds left: by costly items where their count is known and one is done, else by
    /// items.
    fn eta(&self) -> f64 {
        self.eta_after(self.start.elapsed().as_secs_f64())
    }

    fn eta_after(&self, elapsed: f64) -> f64 {
        let (left, done) = match self.work_total {
            Some(total) if self.work_done > 0 => {
                (total.saturating_sub(self.work_done), self.work_done)
            }
            _ => (self.total.saturating_sub(self.done), self.done),
        };
        left as f64 * elapsed / (done as f64).max(1e-9)
    }

    /// `done/total unit, rate unit/s, elapsed s, eta s`.
    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / elapsed.max(1e-9);
        format!(
            "{}/{} {unit}, {rate:.2} {unit}/s, elapsed {elapsed:.0} s, eta {:.0} s",
            self.done,
            self.total,
            self.eta(),
            unit = self.unit
        )
    }

    pub(crate) fn finish(&self) {
        if let Show::Bar(bar) = &self.how {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_costly_items_when_their_number_is_known() {
        let mut by_rows = Progress::new(10, true);
        let mut by_work = Progress::new(10, true);
        by_work.set_work(3);
        for p in [&mut by_rows, &mut by_work] {
            p.tick_item(true);
            (0..7).for_each(|_| p.tick_item(false));
        }
        // 8 of 10 rows in 10 s: 2 rows left at 1.25 s each; but 1 of 3 archs to score done:
        // 2 archs left at 10 s each.
        assert_eq!(by_rows.eta_after(10.0), 2.5);
        assert_eq!(by_work.eta_after(10.0), 20.0);
    }
}
