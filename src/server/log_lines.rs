//! Where log lines go: stderr, one write per line, except on a thread that gathers its lines.
//!
//! Saturated, a decision thread answers requests back to back, and each answer has its line
//! (SPEC §3). Written one by one, every line is a system call of its own. A decision thread
//! [`gather`]s: while it runs a job with more waiting behind it ([`hold`]), it keeps its
//! lines, and writes them in one call when it takes a job with none waiting behind (before
//! that job's own line, which then goes out as it comes, before its answer, as on any other
//! thread), when it runs out of work ([`flush`]), when they pass [`GATHER_BYTES`], or when it
//! takes its next job and the first of them is older than [`GATHER_AGE`]. So a kept line
//! waits at most that long plus one decision, and at a steady low rate, where no job waits
//! behind another, nothing is kept. Lines are whole either way: each write holds stderr's
//! lock.
use std::{
    cell::RefCell,
    io::{self, Write},
    time::{Duration, Instant},
};

use tracing_subscriber::fmt::MakeWriter;

/// Kept lines are written once they are this long.
pub const GATHER_BYTES: usize = 8 * 1024;

/// Kept lines are written when the next job starts once the first of them is this old.
pub const GATHER_AGE: Duration = Duration::from_millis(1);

/// The lines this thread keeps, if it gathers.
#[derive(Debug)]
struct Gathered {
    lines: Vec<u8>,
    /// When the first kept line was kept.
    since: Option<Instant>,
    /// Whether lines are kept now ([`hold`]).
    holding: bool,
    /// Where they are written: stderr but in tests.
    out: fn(&[u8]),
}

fn to_stderr(lines: &[u8]) {
    // As tracing-subscriber does with a failed write: the lines are lost, not the requests.
    let _ = io::stderr().lock().write_all(lines);
}

impl Gathered {
    fn keep(&mut self, line: &[u8]) {
        // Not holding, nothing is kept: `hold(false)` wrote it out.
        if !self.holding {
            (self.out)(line);
            return;
        }
        if self.lines.is_empty() {
            self.since = Some(Instant::now());
        }
        self.lines.extend_from_slice(line);
        if self.lines.len() >= GATHER_BYTES {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if !self.lines.is_empty() {
            (self.out)(&self.lines);
        }
        self.lines.clear();
        self.since = None;
        // A long line is not kept for good.
        if self.lines.capacity() > 4 * GATHER_BYTES {
            self.lines = Vec::new();
        }
    }
}

thread_local! {
    static GATHERED: RefCell<Option<Gathered>> = const { RefCell::new(None) };
}

/// Makes this thread one that gathers (see the module documentation); it keeps nothing
/// until it [`hold`]s.
pub fn gather() {
    gather_into(to_stderr);
}

fn gather_into(out: fn(&[u8])) {
    GATHERED.with(|g| {
        *g.borrow_mut() = Some(Gathered {
            lines: Vec::new(),
            since: None,
            holding: false,
            out,
        })
    });
}

/// Whether this thread keeps lines not yet written.
pub fn kept() -> bool {
    with_gathered(|g| !g.lines.is_empty()).unwrap_or(false)
}

/// Writes the lines this thread keeps.
pub fn flush() {
    with_gathered(Gathered::write_out);
}

/// Whether this thread keeps its lines from now on (a job with more waiting behind it) or
/// writes them as they come; either way, kept lines are written first if it stops keeping
/// or they are older than [`GATHER_AGE`].
pub fn hold(keep: bool) {
    with_gathered(|g| {
        g.holding = keep;
        if !keep || g.since.is_some_and(|since| since.elapsed() >= GATHER_AGE) {
            g.write_out();
        }
    });
}

/// Runs `f` on this thread's kept lines; `None` when it does not gather.
fn with_gathered<R>(f: impl FnOnce(&mut Gathered) -> R) -> Option<R> {
    GATHERED
        .try_with(|g| g.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

/// The log subscriber's writer: see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// Takes one line: kept if this thread gathers, else written to stderr.
#[derive(Debug)]
pub struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match with_gathered(|g| g.keep(buf)) {
            Some(()) => Ok(()),
            None => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Kept lines are written by `flush()` above, at the thread's own pace.
        match with_gathered(|_| ()) {
            Some(()) => Ok(()),
            None => io::stderr().flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// What this test thread's kept lines were written as, one entry per write.
        static WRITTEN: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    fn record(lines: &[u8]) {
        WRITTEN.with(|w| w.borrow_mut().push(lines.to_vec()));
    }

    fn written() -> Vec<Vec<u8>> {
        WRITTEN.with(|w| w.borrow().clone())
    }

    /// A thread that gathers keeps its lines while it holds, in order, and writes them in
    /// one piece when it stops holding, before the next line; it keeps nothing when it does
    /// not hold, nor does a thread that does not gather.
    #[test]
    fn held_lines_are_written_in_one_piece_when_the_hold_ends() {
        std::thread::spawn(|| {
            hold(true);
            assert!(with_gathered(|_| ()).is_none(), "not gathering");
            gather_into(record);
            Line.write_all(b"direct\n").unwrap();
            assert_eq!(written(), [b"direct\n".to_vec()], "gathering, not holding");
            hold(true);
            Line.write_all(b"one\n").unwrap();
            Line.write_all(b"two\n").unwrap();
            assert!(kept());
            hold(true);
            assert_eq!(written().len(), 1, "held, not stale yet");
            hold(false);
            assert_eq!(written()[1..], [b"one\ntwo\n".to_vec()]);
            assert!(!kept());
            Line.write_all(b"three\n").unwrap();
            assert_eq!(written()[2..], [b"three\n".to_vec()]);
            hold(true);
            Line.write_all(b"four\n").unwrap();
            flush();
            assert_eq!(written()[3..], [b"four\n".to_vec()]);
            flush();
            assert_eq!(written().len(), 4, "nothing more to write");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn held_lines_are_written_once_long_or_old() {
        std::thread::spawn(|| {
            gather_into(record);
            hold(true);
            let line = [b'x'; 100];
            let mut lines = 0;
            while (lines + 1) * line.len() < GATHER_BYTES {
                Line.write_all(&line).unwrap();
                lines += 1;
            }
            assert!(written().is_empty());
            Line.write_all(&line).unwrap();
            assert_eq!(
                written(),
                [line.repeat(lines + 1)],
                "written at GATHER_BYTES"
            );
            assert!(!kept());

            Line.write_all(b"old\n").unwrap();
            std::thread::sleep(GATHER_AGE + Duration::from_millis(1));
            hold(true);
            assert_eq!(
                written()[1..],
                [b"old\n".to_vec()],
                "written after GATHER_AGE"
            );
            assert!(!kept());
        })
        .join()
        .unwrap();
    }
}
