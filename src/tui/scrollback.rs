//! Answers the state's requests for log lines that are no longer (or not yet) in
//! memory, by reading the service's log file back.
//!
//! Runs on the TUI's reader thread, never on the render path; owns nothing. The file
//! only grows at its end (and rotates), so a position is best named by a line already
//! in memory: "the lines before this one". Counts from the end are only a hint, because
//! the service may have written more lines between the request and the read; the line
//! itself is looked for near where the count says it should be, and the read is
//! widened when the file grew past it.

use std::io;
use std::sync::Arc;

use super::state::{Line, Request};
use crate::logs::{parse_timestamp, LogLine};

/// Extra lines read beyond the counted position, for lines written while the request
/// was on its way.
const SLACK: usize = 2_048;
/// Never read more than this many lines for one answer: a runaway service can write
/// faster than the file can be read back, and then the answer falls back to timestamps.
const MAX_READ: usize = 4_000_000;

/// `read_tail(service, count)`: the last `count` lines of a service's log, rotated
/// files included, oldest first (what [`crate::logs::read_tail`] does on a log dir).
pub type ReadTail = dyn Fn(&str, usize) -> io::Result<Vec<LogLine>> + Send + Sync;

#[derive(Debug)]
pub enum Loaded {
    Older {
        service: Arc<str>,
        lines: Vec<Arc<Line>>,
        at_file_start: bool,
    },
    Newer {
        service: Arc<str>,
        lines: Vec<Arc<Line>>,
        reached_end: bool,
    },
    Tail {
        service: Arc<str>,
        lines: Vec<Arc<Line>>,
        at_file_start: bool,
    },
}

fn convert(service: &Arc<str>, raw: Vec<LogLine>) -> Vec<Arc<Line>> {
    raw.into_iter()
        .map(|line| Arc::new(Line::from_log(service, line)))
        .collect()
}

/// Compares cheaply first: most lines differ in time.
fn is_same(raw: &LogLine, line: &Line) -> bool {
    parse_timestamp(&raw.timestamp).unwrap_or(0) == line.at_ms
        && raw.stream == line.stream
        && Line::from_log(&line.service, raw.clone()).same_as(line)
}

/// Index of `line` in `raw`, looked for downward from where `from_end` (lines after
/// it) puts it: a file that grew only moves it to a lower index.
fn locate(raw: &[LogLine], line: &Line, from_end: usize) -> Option<usize> {
    let expected = raw.len().checked_sub(from_end + 1)?;
    (0..=expected)
        .rev()
        .find(|&index| is_same(&raw[index], line))
}

fn first_time(raw: &[LogLine]) -> u64 {
    raw.first()
        .and_then(|line| parse_timestamp(&line.timestamp))
        .unwrap_or(0)
}

/// Carries out a `LoadOlder`, `LoadNewer` or `LoadTail` request; `None` for others.
pub fn answer(read_tail: &ReadTail, request: &Request) -> Option<io::Result<Loaded>> {
    match request {
        Request::LoadOlder {
            service,
            before_line_count,
            count,
            front,
        } => Some(load_older(
            read_tail,
            service,
            *before_line_count,
            *count,
            front.as_deref(),
        )),
        Request::LoadNewer {
            service,
            after_line_count,
            count,
            back,
        } => Some(load_newer(
            read_tail,
            service,
            *after_line_count,
            *count,
            back,
        )),
        Request::LoadTail { service, count } => Some(read_tail(service, *count).map(|raw| {
            let at_file_start = raw.len() < *count;
            Loaded::Tail {
                service: service.clone(),
                lines: convert(service, raw),
                at_file_start,
            }
        })),
        _ => None,
    }
}

fn load_older(
    read_tail: &ReadTail,
    service: &Arc<str>,
    before: usize,
    count: usize,
    front: Option<&Line>,
) -> io::Result<Loaded> {
    let older = |lines: Vec<LogLine>, at_file_start: bool| Loaded::Older {
        service: service.clone(),
        lines: convert(service, lines),
        at_file_start,
    };
    let Some(front) = front else {
        let raw = read_tail(service, count)?;
        let at_file_start = raw.len() < count;
        return Ok(older(raw, at_file_start));
    };
    let mut want = before + count + SLACK;
    loop {
        let mut raw = read_tail(service, want)?;
        let exhausted = raw.len() < want;
        if let Some(at) = locate(&raw, front, before.saturating_sub(1)) {
            let start = at.saturating_sub(count);
            raw.truncate(at);
            let lines = raw.split_off(start);
            return Ok(older(lines, exhausted && start == 0));
        }
        if !exhausted && first_time(&raw) > front.at_ms && want < MAX_READ {
            want = want.saturating_mul(2);
            continue;
        }
        // The line is gone (rotated away) or unreadable: fall back to time order.
        raw.retain(|line| parse_timestamp(&line.timestamp).unwrap_or(0) < front.at_ms);
        let start = raw.len().saturating_sub(count);
        let lines = raw.split_off(start);
        return Ok(older(lines, exhausted && start == 0));
    }
}

fn load_newer(
    read_tail: &ReadTail,
    service: &Arc<str>,
    after: usize,
    count: usize,
    back: &Line,
) -> io::Result<Loaded> {
    let newer = |lines: Vec<LogLine>, reached_end: bool| Loaded::Newer {
        service: service.clone(),
        lines: convert(service, lines),
        reached_end,
    };
    let mut want = after + 1 + SLACK;
    loop {
        let mut raw = read_tail(service, want)?;
        let exhausted = raw.len() < want;
        if let Some(at) = locate(&raw, back, after) {
            let end = (at + 1 + count).min(raw.len());
            let reached_end = end == raw.len();
            raw.truncate(end);
            let lines = raw.split_off(at + 1);
            return Ok(newer(lines, reached_end));
        }
        if !exhausted && first_time(&raw) > back.at_ms && want < MAX_READ {
            want = want.saturating_mul(2);
            continue;
        }
        raw.retain(|line| parse_timestamp(&line.timestamp).unwrap_or(0) > back.at_ms);
        let reached_end = raw.len() <= count;
        raw.truncate(count);
        return Ok(newer(raw, reached_end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{format_timestamp, Stream};

    fn file(lines: usize) -> Vec<LogLine> {
        (0..lines)
            .map(|n| LogLine {
                timestamp: format_timestamp(1_000_000 + n as u64),
                stream: Stream::Stdout,
                text: format!("line {n}"),
            })
            .collect()
    }

    fn reader(lines: Vec<LogLine>) -> Box<ReadTail> {
        Box::new(move |_service: &str, count: usize| {
            Ok(lines[lines.len().saturating_sub(count)..].to_vec())
        })
    }

    fn texts(loaded: &Loaded) -> Vec<String> {
        let lines = match loaded {
            Loaded::Older { lines, .. }
            | Loaded::Newer { lines, .. }
            | Loaded::Tail { lines, .. } => lines,
        };
        lines.iter().map(|line| line.text.to_string()).collect()
    }

    fn line_of(service: &Arc<str>, raw: &LogLine) -> Arc<Line> {
        Arc::new(Line::from_log(service, raw.clone()))
    }

    #[test]
    fn older_lines_end_right_before_the_front_even_when_the_file_grew() -> io::Result<()> {
        let lines = file(10_000);
        let service: Arc<str> = Arc::from("api");
        let front = line_of(&service, &lines[9_000]);
        // The window believed 500 lines followed its front; 500 more were written since.
        let request = Request::LoadOlder {
            service: service.clone(),
            before_line_count: 500,
            count: 100,
            front: Some(front),
        };
        let loaded = answer(&*reader(lines), &request).expect("a load request")?;
        let texts = texts(&loaded);
        assert_eq!(texts.len(), 100);
        assert_eq!(texts[0], "line 8900");
        assert_eq!(texts[99], "line 8999");
        assert!(matches!(
            loaded,
            Loaded::Older {
                at_file_start: false,
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn older_lines_report_the_start_of_the_file() -> io::Result<()> {
        let lines = file(50);
        let service: Arc<str> = Arc::from("api");
        let front = line_of(&service, &lines[20]);
        let request = Request::LoadOlder {
            service,
            before_line_count: 30,
            count: 100,
            front: Some(front),
        };
        let loaded = answer(&*reader(lines), &request).expect("a load request")?;
        assert_eq!(texts(&loaded).len(), 20);
        assert!(matches!(
            loaded,
            Loaded::Older {
                at_file_start: true,
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn newer_lines_start_right_after_the_back() -> io::Result<()> {
        let lines = file(10_000);
        let service: Arc<str> = Arc::from("api");
        let back = line_of(&service, &lines[5_000]);
        let request = Request::LoadNewer {
            service,
            after_line_count: 4_999,
            count: 10,
            back,
        };
        let loaded = answer(&*reader(lines), &request).expect("a load request")?;
        let texts = texts(&loaded);
        assert_eq!(texts.first().map(String::as_str), Some("line 5001"));
        assert_eq!(texts.len(), 10);
        assert!(matches!(
            loaded,
            Loaded::Newer {
                reached_end: false,
                ..
            }
        ));
        Ok(())
    }
}
