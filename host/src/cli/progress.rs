//! Progress bars on a terminal: one bar per task (a table landing, cleaning,
//! computing or loading), with rows, bytes, throughput and time left. Log
//! lines go above the bars instead of through them.

use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medallion_common::progress::{Measure, Progress, Reporter, View};

/// Draws every task as a bar on standard error.
#[derive(Clone)]
pub(crate) struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub(crate) fn new() -> Self {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)) }
    }
}

impl Reporter for Bars {
    fn open(&self, stage: &str, name: &str, total: Option<u64>, measure: Measure) -> Box<dyn View> {
        let template = match (total, measure) {
            (Some(_), Measure::Bytes) => {
                "{prefix:>6} {msg:<28} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            }
            (Some(_), Measure::Rows) => {
                "{prefix:>6} {msg:<28} [{bar:30}] {percent:>3}% {human_pos}/{human_len} rows {per_sec} ETA {eta}"
            }
            (None, _) => "{prefix:>6} {msg:<28} {spinner} {human_pos} rows {per_sec}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)).with_style(style));
        bar.set_prefix(stage.to_owned());
        bar.set_message(name.to_owned());
        Box::new(Bar { bar, name: name.to_owned() })
    }
}

struct Bar {
    bar: ProgressBar,
    name: String,
}

impl View for Bar {
    fn update(&self, now: &Progress) {
        self.bar.set_position(now.position());
        if now.measure == Measure::Bytes {
            self.bar.set_message(format!("{} {} rows", self.name, now.rows));
        }
    }

    fn finish(&self, _now: &Progress, ok: bool) {
        if ok {
            self.bar.finish_and_clear();
        } else {
            self.bar.abandon_with_message(format!("{} stopped", self.name));
        }
    }
}

/// Standard error for log lines, drawn above the bars.
impl Write for Bars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.multi.suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Bars {
    type Writer = Bars;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
