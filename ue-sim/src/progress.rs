//! Live progress of a run: an `indicatif` bar on a terminal, plain periodic lines otherwise
//! (CI logs, pipes).
//!
//! [`Progress::update`] takes the [`TimelinePoint`]s `run::run` reports once per second and
//! shows the run time, the joins, zaps and leaves so far (summed over the points) and the
//! sessions active now. It is `Fn`-friendly (`&self`, interior mutability) because the runner
//! takes its progress callback as `&dyn Fn(&TimelinePoint)`. It never reads the clock: time
//! is the points' `t_s`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::TimelinePoint;

/// Totals so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Run time, s (the last point's `t_s`).
    pub t_s: f64,
    /// Joins so far.
    pub joins: u64,
    /// Zaps so far.
    pub zaps: u64,
    /// Leaves so far.
    pub leaves: u64,
    /// Sessions active at the last point.
    pub active: u64,
}

impl Totals {
    /// Adds one timeline point.
    pub fn add(&mut self, p: &TimelinePoint) {
        self.t_s = p.t_s;
        self.joins += p.joins;
        self.zaps += p.zaps;
        self.leaves += p.leaves;
        self.active = p.active;
    }

    /// `t=12s joins=340 zaps=55 leaves=10 active=330`.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "t={:.0}s joins={} zaps={} leaves={} active={}",
            self.t_s, self.joins, self.zaps, self.leaves, self.active
        )
    }
}

enum Sink {
    Bar(ProgressBar),
    Lines {
        every_s: f64,
        next_s: f64,
        out: Box<dyn Write + Send>,
    },
    Quiet,
}

/// The progress display of one run.
pub struct Progress {
    inner: Mutex<(Totals, Sink)>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}

impl Progress {
    /// A bar when stderr is a terminal (its length is `expected_s` seconds when known), else
    /// a line on stderr every 5 s of run time.
    #[must_use]
    pub fn stderr(expected_s: Option<f64>) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(expected_s)
        } else {
            Self::lines(5.0, Box::new(std::io::stderr()))
        }
    }

    /// An `indicatif` bar on stderr.
    #[must_use]
    pub fn bar(expected_s: Option<f64>) -> Self {
        let len = expected_s.filter(|s| s.is_finite() && *s > 0.0);
        let bar = ProgressBar::with_draw_target(
            len.map(|s| s.ceil() as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        let template = if len.is_some() {
            "{spinner} [{bar:20.cyan/blue}] {pos:>3}/{len}s {wide_msg}"
        } else {
            "{spinner} {pos:>4}s {wide_msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self::with(Sink::Bar(bar))
    }

    /// One line per `every_s` (at least 0.1) seconds of run time, written to `out`.
    #[must_use]
    pub fn lines(every_s: f64, out: Box<dyn Write + Send>) -> Self {
        Self::with(Sink::Lines {
            every_s: every_s.max(0.1),
            next_s: 0.0,
            out,
        })
    }

    /// Shows nothing (totals are still kept).
    #[must_use]
    pub fn quiet() -> Self {
        Self::with(Sink::Quiet)
    }

    fn with(sink: Sink) -> Self {
        Self {
            inner: Mutex::new((Totals::default(), sink)),
        }
    }

    /// Takes one timeline point.
    pub fn update(&self, p: &TimelinePoint) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let (totals, sink) = &mut *g;
        totals.add(p);
        match sink {
            Sink::Bar(bar) => {
                bar.set_position(totals.t_s.max(0.0) as u64);
                bar.set_message(totals.line());
            }
            Sink::Lines {
                every_s,
                next_s,
                out,
            } => {
                if totals.t_s >= *next_s {
                    let _ = writeln!(out, "ue-sim: {}", totals.line());
                    let _ = out.flush();
                    *next_s = ((totals.t_s / *every_s).floor() + 1.0) * *every_s;
                }
            }
            Sink::Quiet => {}
        }
    }

    /// The totals so far.
    #[must_use]
    pub fn totals(&self) -> Totals {
        self.inner.lock().map(|g| g.0).unwrap_or_default()
    }

    /// Ends the display (the bar stays on screen with the final line).
    pub fn finish(&self) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let (totals, sink) = &mut *g;
        match sink {
            Sink::Bar(bar) => bar.finish_with_message(totals.line()),
            Sink::Lines { out, .. } => {
                let _ = writeln!(out, "ue-sim: done {}", totals.line());
                let _ = out.flush();
            }
            Sink::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn point(t: u32, joins: u64, zaps: u64, active: u64) -> TimelinePoint {
        TimelinePoint {
            t_s: f64::from(t),
            joins,
            zaps,
            leaves: 0,
            active,
            ..TimelinePoint::default()
        }
    }

    #[test]
    fn lines_every_period_with_running_totals() {
        let buf = Shared::default();
        let p = Progress::lines(5.0, Box::new(buf.clone()));
        for t in 1..=12 {
            p.update(&point(t, 10, u64::from(t > 6), u64::from(t) * 10));
        }
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ue-sim: t=1s joins=10 zaps=0 leaves=0 active=10",
                "ue-sim: t=5s joins=50 zaps=0 leaves=0 active=50",
                "ue-sim: t=10s joins=100 zaps=4 leaves=0 active=100",
                "ue-sim: done t=12s joins=120 zaps=6 leaves=0 active=120",
            ]
        );
        assert_eq!(p.totals().joins, 120);
    }

    #[test]
    fn callable_through_a_dyn_fn() {
        let p = Progress::quiet();
        let f: &dyn Fn(&TimelinePoint) = &|x| p.update(x);
        f(&point(1, 3, 1, 3));
        f(&point(2, 2, 0, 4));
        assert_eq!(p.totals().joins, 5);
        assert_eq!(p.totals().active, 4);
    }
}
