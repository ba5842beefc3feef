//! Service output: the only writer of `.fleet/logs/<service>.log`.
//!
//! Every line a service prints is written to its file first, then offered to live
//! viewers through one fleet-wide broadcast channel. A viewer that falls behind loses
//! broadcast batches, never file lines, and can read the file back; so a slow terminal
//! never slows a service down and nothing is lost.
//!
//! # File format
//! One line per output line: `2026-11-26T06:25:08.123Z out <bytes>`, where the tag is
//! `out` (stdout), `err` (stderr), `bld` (build output) or `---` (fleet's own lines,
//! such as the boundary written at each start). The timestamp is fixed-width UTC, so
//! files merge by plain byte comparison. Service bytes are written as they came,
//! invalid UTF-8 included; readers decode lossily.
//!
//! # Rotation
//! When a file grows past `log_max_size` it is renamed to `<service>.log.1` (older ones
//! shift up, the oldest beyond `log_keep` is removed) and a new file is started.
//!
//! # Faults
//! A write that fails (a full disk) is undone, its lines counted and dropped, and the
//! pipes read on; a file or folder removed while fleet runs is made again, with what
//! went into the removed file. Both are said once, in the file and as events; see
//! [`ServiceLog`].
//!
//! # Following
//! Readers that are not the supervisor (`fleet logs -f`, `fleet tui`) follow the files
//! with one [`LogFollower`]: inotify on the folder, reads of what was appended, rotation
//! and a folder made again handled; see its documentation.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::broadcast;

use crate::event::{now_ms, EventKind};

/// Largest read size for service pipes: large reads mean few syscalls when a service
/// floods.
const READ_CHUNK: usize = 256 * 1024;
/// First read size of each wake-up: enough for any burst of ordinary log lines.
const FIRST_READ_CHUNK: usize = 4 * 1024;
/// How long a pump copies a flood before it lets other tasks on its worker run: a few
/// 256 KiB reads, written.
const FLOOD_SLICE: Duration = Duration::from_millis(2);
/// A line longer than this without a newline is written in pieces of this size, so a
/// service printing one endless line cannot grow fleet's memory without bound.
const MAX_LINE: usize = 64 * 1024;
/// Broadcast capacity in batches (each batch is up to one read chunk). A viewer that
/// lags further than this skips ahead and says so; the file keeps everything.
const BROADCAST_BATCHES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    Build,
    Fleet,
}

impl Stream {
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
            Stream::Build => "bld",
            Stream::Fleet => "---",
        }
    }

    pub fn from_tag(tag: &[u8]) -> Option<Stream> {
        match tag {
            b"out" => Some(Stream::Stdout),
            b"err" => Some(Stream::Stderr),
            b"bld" => Some(Stream::Build),
            b"---" => Some(Stream::Fleet),
            _ => None,
        }
    }
}

/// Complete lines of one service, as they arrived, for live viewers.
#[derive(Debug)]
pub struct LogBatch {
    pub service: Arc<str>,
    pub stream: Stream,
    pub at_ms: u64,
    /// One or more lines, each ending in `\n`, bytes as the service wrote them.
    pub lines: Vec<u8>,
}

impl LogBatch {
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        memchr::memchr_iter(b'\n', &self.lines).map(move |end| {
            let line = &self.lines[start..end];
            start = end + 1;
            line
        })
    }
}

/// The fleet-wide live feed of output lines.
#[derive(Clone)]
pub struct LogHub {
    sender: broadcast::Sender<Arc<LogBatch>>,
}

impl Default for LogHub {
    fn default() -> Self {
        LogHub {
            sender: broadcast::channel(BROADCAST_BATCHES).0,
        }
    }
}

impl LogHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogBatch>> {
        self.sender.subscribe()
    }

    /// Whether anyone is watching live.
    fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    fn publish(&self, batch: LogBatch) {
        if self.watched() {
            // No receiver is not an error: nobody is watching live.
            let _ = self.sender.send(Arc::new(batch));
        }
    }
}

/// The file being written, and what the writer knows about it.
struct LogFile {
    /// `None` after the file could not be made again; the next write tries.
    file: Option<File>,
    size: u64,
    /// (device, inode) of `file`: another file at the path, or none, means it was
    /// removed or replaced behind fleet's back.
    identity: Option<(u64, u64)>,
    /// When the path was last compared with `identity`, and the size then: what was
    /// written since may have gone to a removed file, and is carried over.
    checked_at_ms: u64,
    size_at_check: u64,
    /// Writes fail: the lines are counted, not kept, until one succeeds.
    dropping: Option<Dropping>,
}

/// An episode of failed writes (a full disk, most often).
struct Dropping {
    since_ms: u64,
    lines: u64,
    /// When a write was last tried: while dropping, at most every `RETRY_PERIOD_MS`.
    tried_at_ms: u64,
}

/// How often the writer checks that its file is still the one at the path. A check is
/// one `stat`, done on a write, so a flood costs it nothing; a removed file is made
/// again within this time of the next line.
const CHECK_PERIOD_MS: u64 = 250;
/// While dropping, how often a write is tried again. A failed try costs one syscall.
const RETRY_PERIOD_MS: u64 = 250;
/// Free space the log's file system must have before a write is tried again after a
/// failed one. Without it a full disk would take the few bytes left in the file's
/// last page, then fail again at once: the log would seem to resume and stop over
/// and over, and say so each time.
const RESUME_FREE_BYTES: u64 = 64 * 1024;
/// At most this much of what went to a removed file is carried over to the new one.
const MAX_CARRY: u64 = 4 * 1024 * 1024;

/// Where a log reports what happened to its file (see [`ServiceLog::report_incidents`]).
type IncidentReport = Box<dyn Fn(EventKind) + Send + Sync>;

/// One service's log file. Shared by the stdout, stderr and build pumps of all its
/// instances and by the runner's own lines; the mutex only orders whole writes.
///
/// # A file that cannot be written
/// A write that fails (`ENOSPC`, `EDQUOT`, `EIO`) is undone (the file is cut back to
/// its last whole line) and its lines are counted as dropped; the pipes are read on as
/// before, so a service never blocks on a full disk, and live viewers still get every
/// line. The first failure is reported once ([`EventKind::LogDropping`]); writes are
/// tried again every `RETRY_PERIOD_MS` once the file system has room, and the first
/// that succeeds starts with a line saying how many lines were dropped
/// ([`EventKind::LogResumed`], reported too).
///
/// # A file that was removed
/// Every `CHECK_PERIOD_MS` (on a write) the writer checks that the path still names
/// its file. If the file or its folder was removed (or replaced), it makes them again,
/// carries over what it wrote into the removed file since the last check, and says so
/// ([`EventKind::LogRecreated`]): no line written after the removal is lost.
pub struct ServiceLog {
    service: Arc<str>,
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Mutex<LogFile>,
    hub: LogHub,
    incidents: OnceLock<IncidentReport>,
}

impl ServiceLog {
    pub fn open(
        dir: &Path,
        service: &str,
        max_size: u64,
        keep: u32,
        hub: LogHub,
    ) -> io::Result<Arc<ServiceLog>> {
        std::fs::create_dir_all(dir)?;
        let path = log_path(dir, service);
        let file = open_for_append(&path)?;
        let metadata = file.metadata()?;
        let size = metadata.len();
        Ok(Arc::new(ServiceLog {
            service: Arc::from(service),
            path,
            max_size,
            keep,
            file: Mutex::new(LogFile {
                file: Some(file),
                size,
                identity: Some(identity(&metadata)),
                checked_at_ms: now_ms(),
                size_at_check: size,
                dropping: None,
            }),
            hub,
            incidents: OnceLock::new(),
        }))
    }

    /// Sends what happens to the file (lines dropped, writes resumed, the file made
    /// again) to `report`, once per incident. Set once; later calls are ignored.
    pub fn report_incidents(&self, report: impl Fn(EventKind) + Send + Sync + 'static) {
        let _ = self.incidents.set(Box::new(report));
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Writes fleet's own line (a start boundary, a status line) into the log.
    pub fn write_fleet_line(&self, text: &str) {
        let mut line = text.as_bytes().to_vec();
        line.push(b'\n');
        self.write_lines(Stream::Fleet, &line, &mut Vec::new());
    }

    /// Writes complete lines (each ending in `\n`), then publishes them. `scratch` is
    /// the caller's reusable buffer, so a flood of output costs no allocation per read.
    /// Every line of one call gets the same prefix (one clock read per pipe read).
    fn write_lines(&self, stream: Stream, lines: &[u8], scratch: &mut Vec<u8>) {
        let at_ms = now_ms();
        let prefix = line_prefix(at_ms, stream);
        scratch.clear();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines) {
            let line = &lines[start..=end];
            // A fixed-size prefix is copied inline, not through a memcpy call: with
            // 100-byte lines this loop is a third of the pump's own CPU time.
            scratch.reserve(PREFIX_LEN + line.len());
            scratch.extend_from_slice(&prefix);
            scratch.extend_from_slice(line);
            start = end + 1;
        }
        self.append(scratch, at_ms);
        // Published even when the file could not take them: a live viewer or a log
        // probe still sees every line.
        if self.hub.watched() {
            self.hub.publish(LogBatch {
                service: self.service.clone(),
                stream,
                at_ms,
                lines: lines.to_vec(),
            });
        }
        // A very long line's buffer is not kept for the lines after it.
        if scratch.capacity() > 4 * READ_CHUNK {
            *scratch = Vec::new();
        }
    }

    /// Writes `bytes` (whole log lines) into the file, or counts them as dropped; then
    /// reports what changed, outside the lock.
    fn append(&self, bytes: &[u8], at_ms: u64) {
        let incidents = match self.file.lock() {
            Ok(mut log) => self.append_locked(&mut log, bytes, at_ms),
            // Only a panic inside a write poisons the lock; the file's state is then
            // unknown, so nothing more is written rather than something garbled.
            Err(_) => return,
        };
        if let Some(report) = self.incidents.get() {
            for incident in incidents {
                report(incident);
            }
        }
    }

    fn append_locked(&self, log: &mut LogFile, bytes: &[u8], at_ms: u64) -> Vec<EventKind> {
        let mut incidents = Vec::new();
        if let Some(dropping) = &mut log.dropping {
            if at_ms < dropping.tried_at_ms + RETRY_PERIOD_MS || !self.room_to_resume() {
                dropping.lines += line_count(bytes);
                return incidents;
            }
            dropping.tried_at_ms = at_ms;
        }
        let mut preamble = Vec::new();
        let checked = if log.file.is_none() || at_ms >= log.checked_at_ms + CHECK_PERIOD_MS {
            self.check_file(log, at_ms, &mut preamble)
        } else {
            Ok(false)
        };
        let resumed = log.dropping.as_ref().map(|dropping| EventKind::LogResumed {
            dropped: dropping.lines,
            over_ms: at_ms.saturating_sub(dropping.since_ms),
        });
        if let Some(resumed) = &resumed {
            push_fleet_line(&mut preamble, at_ms, &resumed.to_string());
        }
        let written = checked.and_then(|recreated| {
            self.write_whole(log, &preamble, bytes)?;
            Ok(recreated)
        });
        match written {
            Ok(recreated) => {
                if recreated {
                    incidents.push(EventKind::LogRecreated);
                }
                if let Some(resumed) = resumed {
                    log.dropping = None;
                    incidents.push(resumed);
                }
            }
            Err(err) => match &mut log.dropping {
                Some(dropping) => dropping.lines += line_count(bytes),
                None => {
                    log.dropping = Some(Dropping {
                        since_ms: at_ms,
                        lines: line_count(bytes),
                        tried_at_ms: at_ms,
                    });
                    incidents.push(EventKind::LogDropping {
                        reason: err.to_string(),
                    });
                }
            },
        }
        incidents
    }

    /// Whether the log's file system has room to try a write again (see
    /// `RESUME_FREE_BYTES`). A folder that is gone, or a file system that cannot say,
    /// gets a try.
    fn room_to_resume(&self) -> bool {
        let Some(dir) = self.path.parent() else {
            return true;
        };
        match nix::sys::statvfs::statvfs(dir) {
            // The free blocks, reserved ones included: a writer that may not use them
            // fails its try, quietly, and tries again later.
            Ok(stats) => {
                stats.blocks_free().saturating_mul(stats.fragment_size()) >= RESUME_FREE_BYTES
            }
            Err(_) => true,
        }
    }

    /// Makes sure the file being written is the one at the path. A file (or folder)
    /// that was removed or replaced is made again; what was written into a removed
    /// file since the last check goes into `preamble`, with a line saying what
    /// happened. Returns whether the file was made again.
    fn check_file(
        &self,
        log: &mut LogFile,
        at_ms: u64,
        preamble: &mut Vec<u8>,
    ) -> io::Result<bool> {
        log.checked_at_ms = at_ms;
        let on_disk = std::fs::metadata(&self.path).ok().map(|m| identity(&m));
        if log.file.is_some() && on_disk.is_some() && on_disk == log.identity {
            log.size_at_check = log.size;
            return Ok(false);
        }
        let old = log.file.take();
        let removed = old.as_ref().is_some_and(|old| {
            use std::os::unix::fs::MetadataExt;
            old.metadata().is_ok_and(|m| m.nlink() == 0)
        });
        if removed && let Some(old) = &old {
            preamble.extend_from_slice(&carry_over(old, log.size_at_check, log.size));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_for_append(&self.path)?;
        let metadata = file.metadata()?;
        log.identity = Some(identity(&metadata));
        log.size = metadata.len();
        log.size_at_check = log.size;
        log.file = Some(file);
        // Gone, not replaced by another file (a rotation by another tool): say so.
        let recreated = old.is_some() && on_disk.is_none();
        if recreated {
            push_fleet_line(preamble, at_ms, &EventKind::LogRecreated.to_string());
        }
        Ok(recreated)
    }

    /// Appends `preamble` and `bytes` as one whole, rotating first if they would pass
    /// `log_max_size`. A write that fails part way is undone: the file is cut back to
    /// where it was, so it never holds half a line.
    fn write_whole(&self, log: &mut LogFile, preamble: &[u8], bytes: &[u8]) -> io::Result<()> {
        let total = (preamble.len() + bytes.len()) as u64;
        if self.max_size > 0 && log.size > 0 && log.size + total > self.max_size {
            self.rotate(log)?;
        }
        let size = log.size;
        let Some(file) = log.file.as_mut() else {
            return Err(io::Error::other("the log file is not open"));
        };
        let written = file
            .write_all(preamble)
            .and_then(|()| file.write_all(bytes));
        match written {
            Ok(()) => {
                log.size += total;
                Ok(())
            }
            Err(err) => {
                // Shrinking needs no space, so this works on a full disk too.
                let _ = file.set_len(size);
                Err(err)
            }
        }
    }

    fn rotate(&self, log: &mut LogFile) -> io::Result<()> {
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            if let Some(file) = &log.file {
                file.set_len(0)?;
            }
            log.size = 0;
            log.size_at_check = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(rotated(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(rotated(n), rotated(n + 1));
        }
        std::fs::rename(&self.path, rotated(1))?;
        let file = open_for_append(&self.path)?;
        log.identity = Some(identity(&file.metadata()?));
        log.file = Some(file);
        log.size = 0;
        log.size_at_check = 0;
        Ok(())
    }

    /// Copies a pipe into the log until the writer closes it. Lines are written whole;
    /// a final line without a newline gets one.
    ///
    /// A pump holds no buffer while its pipe is empty: it waits for the pipe to be
    /// readable, reads until it is drained into a buffer that starts small and grows
    /// while reads fill it (a flood gets 256 KiB reads), then lets the buffer go. A
    /// hundred quiet services then cost no read buffers at all.
    pub async fn pump(self: Arc<Self>, reader: pipe::Receiver, stream: Stream) {
        let mut writer = LineWriter::new(self, stream);
        'wakes: loop {
            if reader.readable().await.is_err() {
                break;
            }
            // Not zeroed: the kernel writes what is read, and only those pages are
            // touched.
            let mut buffer: Vec<u8> = Vec::with_capacity(FIRST_READ_CHUNK);
            // When the current run of full reads began (a flood), if one is under way.
            let mut flood_since: Option<Instant> = None;
            loop {
                buffer.clear();
                match reader.try_read_buf(&mut buffer) {
                    Ok(0) => break 'wakes,
                    Ok(read) => {
                        writer.push(&buffer);
                        if read < buffer.capacity() {
                            // Probably drained; the next read says so.
                            flood_since = None;
                            continue;
                        }
                        if buffer.capacity() < READ_CHUNK {
                            buffer = Vec::with_capacity(buffer.capacity() * 4);
                        }
                        // A full read means more is waiting: a flooding service keeps
                        // the pipe ready, and tokio's budget would let this loop run
                        // 128 reads (over 100 MiB of log writes) before other tasks on
                        // this worker, such as a `fleet ps`, get a turn. Yielding after
                        // every read instead costs a poll of the I/O driver each time
                        // (a tenth of the pump's CPU in a flood); after `FLOOD_SLICE`
                        // is the middle way.
                        let since = *flood_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= FLOOD_SLICE {
                            tokio::task::yield_now().await;
                            flood_since = None;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break 'wakes,
                }
            }
            writer.drained();
        }
        writer.finish();
    }
}

/// Turns arbitrary chunks of one stream (pipe reads, Docker log frames) into whole
/// lines in a service's log.
pub struct LineWriter {
    log: Arc<ServiceLog>,
    stream: Stream,
    carry: Vec<u8>,
    scratch: Vec<u8>,
}

impl LineWriter {
    pub fn new(log: Arc<ServiceLog>, stream: Stream) -> LineWriter {
        LineWriter {
            log,
            stream,
            carry: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Writes every complete line in `chunk` (with what was carried over); keeps the
    /// incomplete tail for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        let Some(last_newline) = memchr::memrchr(b'\n', chunk) else {
            self.carry.extend_from_slice(chunk);
            if self.carry.len() >= MAX_LINE {
                self.carry.push(b'\n');
                self.log
                    .write_lines(self.stream, &self.carry, &mut self.scratch);
                self.carry.clear();
            }
            return;
        };
        if self.carry.is_empty() {
            // The common case: the chunk starts with a fresh line; no copy needed.
            self.log
                .write_lines(self.stream, &chunk[..=last_newline], &mut self.scratch);
        } else {
            self.carry.extend_from_slice(&chunk[..=last_newline]);
            self.log
                .write_lines(self.stream, &self.carry, &mut self.scratch);
            self.carry.clear();
        }
        self.carry.extend_from_slice(&chunk[last_newline + 1..]);
    }

    /// The input is drained for now: a large buffer that a burst left is let go, so
    /// a service that flooded once and went quiet does not hold it.
    pub fn drained(&mut self) {
        if self.scratch.capacity() > FIRST_READ_CHUNK {
            self.scratch = Vec::new();
        }
        if self.carry.is_empty() && self.carry.capacity() > FIRST_READ_CHUNK {
            self.carry = Vec::new();
        }
    }

    /// Writes a final incomplete line, newline added.
    pub fn finish(mut self) {
        if !self.carry.is_empty() {
            self.carry.push(b'\n');
            self.log
                .write_lines(self.stream, &self.carry, &mut self.scratch);
        }
    }
}

/// Opens (or makes) a log file to append to; readable too, so that what went into it
/// after its removal can be carried over to its successor.
fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

fn line_count(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Appends one of fleet's own lines, in the file format, to `buffer`.
fn push_fleet_line(buffer: &mut Vec<u8>, at_ms: u64, text: &str) {
    buffer.extend_from_slice(
        format!(
            "{} {} {text}\n",
            format_timestamp(at_ms),
            Stream::Fleet.tag()
        )
        .as_bytes(),
    );
}

/// The bytes `from..to` of a removed file that fleet still holds open, at most the
/// last `MAX_CARRY` of them, starting at a whole line. Unreadable: nothing.
fn carry_over(old: &File, from: u64, to: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    if to <= from {
        return Vec::new();
    }
    let start = from.max(to.saturating_sub(MAX_CARRY));
    let mut bytes = vec![0u8; (to - start) as usize];
    if old.read_exact_at(&mut bytes, start).is_err() {
        return Vec::new();
    }
    if start > from {
        // Cut inside a line: begin after its end.
        match memchr::memchr(b'\n', &bytes) {
            Some(end) => {
                bytes.drain(..=end);
            }
            None => bytes.clear(),
        }
    }
    bytes
}

pub fn log_path(dir: &Path, service: &str) -> PathBuf {
    crate::project::log_file(dir, service)
}

/// Bytes before each line in the file: the timestamp, a space, the tag, a space.
const PREFIX_LEN: usize = TIMESTAMP_LEN + 5;
/// `2026-11-26T06:25:08.123Z`: fixed width for years 0 to 9999.
const TIMESTAMP_LEN: usize = 24;

/// `<timestamp> <tag> ` for lines of `stream` stamped `at_ms`.
fn line_prefix(at_ms: u64, stream: Stream) -> [u8; PREFIX_LEN] {
    let mut prefix = [b' '; PREFIX_LEN];
    let stamp = format_timestamp(at_ms);
    // Past the year 9999 the stamp would be longer; cut rather than shift the tag.
    let stamp = &stamp.as_bytes()[..stamp.len().min(TIMESTAMP_LEN)];
    prefix[..stamp.len()].copy_from_slice(stamp);
    prefix[TIMESTAMP_LEN + 1..TIMESTAMP_LEN + 4].copy_from_slice(stream.tag().as_bytes());
    prefix
}

/// `2026-11-26T06:25:08.123Z` for milliseconds since the Unix epoch.
pub fn format_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let day_secs = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        (day_secs / 60) % 60,
        day_secs % 60,
        ms % 1000
    )
}

/// Parses what [`format_timestamp`] writes.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 || bytes[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let days = days_from_civil(num(0..4)? as i64, num(5..7)? as u32, num(8..10)? as u32);
    let secs = days as u64 * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    Some(secs * 1000 + num(20..23)?)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// One line read back from a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The fixed-width timestamp as written; sorts by time.
    pub timestamp: String,
    pub stream: Stream,
    pub text: String,
}

impl LogLine {
    pub fn parse(raw: &[u8]) -> Option<LogLine> {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let timestamp = std::str::from_utf8(raw.get(..24)?).ok()?;
        if raw.get(24) != Some(&b' ') || raw.get(28) != Some(&b' ') {
            return None;
        }
        let stream = Stream::from_tag(raw.get(25..28)?)?;
        let text = String::from_utf8_lossy(raw.get(29..)?).into_owned();
        Some(LogLine {
            timestamp: timestamp.to_string(),
            stream,
            text,
        })
    }
}

/// The last `count` lines of a service's log, reading rotated files too when the live
/// one holds fewer. Reads backwards from the end, so a huge file costs little.
/// The replica numbers (2 and up) whose logs exist for `service` in `dir`
/// (`NAME.N.log`; replica 1 writes `NAME.log`), in order.
pub fn replica_logs(dir: &Path, service: &str) -> Vec<u32> {
    let prefix = format!("{service}.");
    let mut replicas: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let number = name.strip_prefix(&prefix)?.strip_suffix(".log")?;
            number.parse::<u32>().ok().filter(|replica| *replica > 1)
        })
        .collect();
    replicas.sort_unstable();
    replicas
}

pub fn read_tail(dir: &Path, service: &str, count: usize) -> io::Result<Vec<LogLine>> {
    let live = log_path(dir, service);
    let mut lines = tail_of_file(&live, count)?;
    let mut n = 1;
    while lines.len() < count {
        let rotated = PathBuf::from(format!("{}.{n}", live.display()));
        if !rotated.exists() {
            break;
        }
        let mut older = tail_of_file(&rotated, count - lines.len())?;
        older.append(&mut lines);
        lines = older;
        n += 1;
    }
    Ok(lines)
}

fn tail_of_file(path: &Path, count: usize) -> io::Result<Vec<LogLine>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    let len = file.metadata()?.len();
    let mut start = len;
    let mut block = 64 * 1024u64;
    let mut data = Vec::new();
    // Read growing blocks from the end until enough newlines are in hand.
    loop {
        let from = start.saturating_sub(block);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&data);
        data = chunk;
        start = from;
        let newlines = memchr::memchr_iter(b'\n', &data).count();
        if start == 0 || newlines > count {
            break;
        }
        block = block.saturating_mul(2);
    }
    let mut lines: Vec<LogLine> = data
        .split(|b| *b == b'\n')
        .filter_map(LogLine::parse)
        .collect();
    if start > 0 && !lines.is_empty() {
        // The first piece may be the end of a line cut by the block boundary; parse
        // rejects most such fragments, and dropping one more keeps the result exact.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(count);
    Ok(lines.split_off(skip))
}

/// Every line of a log file from `offset` on, and the offset after the last whole line.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<LogLine>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let offset = if offset > len { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = io::BufReader::new(file);
    let mut lines = Vec::new();
    let mut position = offset;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let read = reader.read_until(b'\n', &mut raw)?;
        if read == 0 || raw.last() != Some(&b'\n') {
            break;
        }
        position += read as u64;
        if let Some(line) = LogLine::parse(&raw) {
            lines.push(line);
        }
    }
    Ok((lines, position))
}

/// How long a follower lets appends gather after it is woken before it reads them: a
/// flooding service then costs a follower a bounded share of the CPU, one read per
/// file per period, and lines of different services close in time arrive together.
const READ_PERIOD: Duration = Duration::from_millis(33);
/// With a watch on the log folder: how often every file is checked anyway, and the
/// watch re-armed if the folder was replaced (a removed `.fleet` made again by the
/// next `fleet up`). Catches what inotify cannot report, such as a dropped queue.
const RESCAN_PERIOD: Duration = Duration::from_secs(1);
/// Without a watch (no log folder yet, or no inotify instance left): how often the
/// files are checked, and the watch tried again.
const POLL_PERIOD: Duration = Duration::from_millis(250);

/// What woke a follower.
enum Wake {
    /// These files changed.
    Paths(Vec<PathBuf>),
    /// The watch lost events or its folder went away: check everything.
    Rescan,
}

/// The watch on the log folder, and which folder (device, inode) it is on: a watch
/// follows an inode, so a folder removed and made again needs a new one.
struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    identity: (u64, u64),
}

/// One followed log file: where the reader is, and which file (inode) that offset is
/// in, so a rotated-in file is read from its start even if it is already longer, and
/// the end of the rotated-out one is not lost.
pub struct Followed {
    service: String,
    path: PathBuf,
    offset: u64,
    inode: Option<u64>,
}

/// Follows the log files of some services from their current ends, as `fleet logs -f`
/// and `fleet tui` do: whole lines, in file order per service, across rotation (the
/// file replaced or shrunk starts over) and across restarts of the fleet (files are
/// appended to, and a folder made again is watched again).
///
/// # Theory of operation
/// An inotify watch on the log folder wakes the follower when a file in it changes;
/// it waits `READ_PERIOD` (33 ms) for more, then reads what was appended to the
/// changed files. Every `RESCAN_PERIOD` (1 s) it checks all files anyway. If the watch
/// cannot be set, it checks every `POLL_PERIOD` (250 ms) instead and tries again. All
/// of this is blocking: a caller runs it on its own thread (`fleet logs -f` on the
/// main one).
pub struct LogFollower {
    dir: PathBuf,
    files: Vec<Followed>,
    /// Bytes a file may be ahead of the reader before the reader skips close to its
    /// end; `None` reads everything.
    max_behind: Option<u64>,
    watch: Option<FolderWatch>,
    wakes: std::sync::mpsc::Receiver<Wake>,
    wake_sender: std::sync::mpsc::Sender<Wake>,
}

fn inode_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl LogFollower {
    /// Follows `<dir>/<service>.log` for each service, from the current end of each.
    pub fn new(dir: PathBuf, services: Vec<String>) -> LogFollower {
        let files = services
            .into_iter()
            .map(|service| Followed::at_end(&dir, service))
            .collect();
        let (wake_sender, wakes) = std::sync::mpsc::channel();
        let mut follower = LogFollower {
            dir,
            files,
            max_behind: None,
            watch: None,
            wakes,
            wake_sender,
        };
        follower.arm_watch();
        follower
    }

    /// Far behind a flood (more than `bytes`), jump close to the end instead of reading
    /// everything: for a live view that shows only the newest lines.
    pub fn skip_when_behind(mut self, bytes: u64) -> LogFollower {
        self.max_behind = Some(bytes);
        self
    }

    /// Follows one more file from where it ended when `file` was made (a replica
    /// added at runtime: its position is taken when its name becomes known, so what it
    /// writes before this call is not lost), unless that file is followed already.
    pub fn add(&mut self, file: Followed) {
        if self.files.iter().any(|followed| followed.path == file.path) {
            return;
        }
        self.files.push(file);
        // Its lines so far may have woken a read that skipped it: check every file.
        let _ = self.wake_sender.send(Wake::Rescan);
    }

    /// Wakes a [`LogFollower::next_lines`] waiting on another thread, so that it
    /// returns soon (for instance to take a file to [`LogFollower::add`]).
    pub fn waker(&self) -> impl Fn() + Send + 'static {
        let sender = self.wake_sender.clone();
        move || {
            let _ = sender.send(Wake::Rescan);
        }
    }

    /// Whether an inotify watch is set (otherwise the follower polls).
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Sets the watch if there is none or its folder was replaced.
    fn arm_watch(&mut self) {
        let identity = inode_of(&self.dir);
        if let (Some(watch), Some(identity)) = (&self.watch, identity)
            && watch.identity == identity
        {
            return;
        }
        self.watch = None;
        let Some(identity) = identity else {
            return;
        };
        let sender = self.wake_sender.clone();
        let dir = self.dir.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let wake = match event {
                // Opening a file (this follower's own reads among them) changes nothing.
                Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => return,
                Ok(event) if event.need_rescan() || event.paths.contains(&dir) => Wake::Rescan,
                Ok(event) => Wake::Paths(event.paths),
                Err(_) => Wake::Rescan,
            };
            let _ = sender.send(wake);
        });
        let Ok(mut watcher) = watcher else {
            return;
        };
        use notify::Watcher as _;
        if watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .is_ok()
        {
            self.watch = Some(FolderWatch {
                _watcher: watcher,
                identity,
            });
        }
    }

    /// Waits until lines were appended to some followed files, and returns them per
    /// service, in file order. Returns empty-handed after at most `RESCAN_PERIOD`
    /// when nothing was, so a caller can check whether it should go on.
    pub fn next_lines(&mut self) -> Vec<(String, Vec<LogLine>)> {
        let period = if self.watch.is_some() {
            RESCAN_PERIOD
        } else {
            POLL_PERIOD
        };
        let mut touched: Option<Vec<PathBuf>> = match self.wakes.recv_timeout(period) {
            Ok(Wake::Paths(paths)) => {
                std::thread::sleep(READ_PERIOD);
                Some(paths)
            }
            Ok(Wake::Rescan) | Err(_) => None,
        };
        while let Ok(wake) = self.wakes.try_recv() {
            match (wake, touched.as_mut()) {
                (Wake::Paths(paths), Some(touched)) => touched.extend(paths),
                _ => touched = None,
            }
        }
        if touched.is_none() {
            self.arm_watch();
        }
        let max_behind = self.max_behind;
        let mut appended = Vec::new();
        for file in &mut self.files {
            if touched
                .as_ref()
                .is_some_and(|touched| !touched.contains(&file.path))
            {
                continue;
            }
            let lines = file.read_appended(max_behind);
            if !lines.is_empty() {
                appended.push((file.service.clone(), lines));
            }
        }
        appended
    }
}

impl Followed {
    /// `<dir>/<service>.log` from its first line: a file that appeared after the
    /// follow began.
    pub fn from_start(dir: &Path, service: String) -> Followed {
        let path = log_path(dir, &service);
        Followed {
            offset: 0,
            inode: inode_of(&path).map(|(_, inode)| inode),
            service,
            path,
        }
    }

    /// `<dir>/<service>.log` from its current end (from its start once it exists, if
    /// it does not yet).
    pub fn at_end(dir: &Path, service: String) -> Followed {
        let path = log_path(dir, &service);
        let metadata = std::fs::metadata(&path).ok();
        Followed {
            offset: metadata.as_ref().map_or(0, |m| m.len()),
            inode: inode_of(&path).map(|(_, inode)| inode),
            service,
            path,
        }
    }

    /// Whole lines appended since the last read. A rotation (another file at the path)
    /// starts over at the new file's beginning, after the lines the old file got since
    /// the last read, which it holds under its rotated name.
    fn read_appended(&mut self, max_behind: Option<u64>) -> Vec<LogLine> {
        let inode = inode_of(&self.path).map(|(_, inode)| inode);
        let mut lines = Vec::new();
        if inode != self.inode {
            if let Some(old) = self.inode {
                let rotated = PathBuf::from(format!("{}.1", self.path.display()));
                if inode_of(&rotated).map(|(_, inode)| inode) == Some(old) {
                    lines = self.read(&rotated, max_behind);
                }
            }
            self.inode = inode;
            self.offset = 0;
        }
        let path = self.path.clone();
        lines.extend(self.read(&path, max_behind));
        lines
    }

    fn read(&mut self, path: &Path, max_behind: Option<u64>) -> Vec<LogLine> {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        // Truncated in place: start over.
        if size < self.offset {
            self.offset = 0;
        }
        if size == self.offset {
            return Vec::new();
        }
        if let Some(max_behind) = max_behind
            && size - self.offset > max_behind
        {
            self.offset = size - max_behind / 4;
        }
        match read_from(path, self.offset) {
            Ok((lines, next)) => {
                self.offset = next;
                lines
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort() {
        let ms = 1_795_674_308_123; // 2026-11-26T06:25:08.123Z
        let text = format_timestamp(ms);
        assert_eq!(text, "2026-11-26T06:25:08.123Z");
        assert_eq!(parse_timestamp(&text), Some(ms));
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert!(format_timestamp(ms) < format_timestamp(ms + 1));
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn lines_parse_back_with_invalid_utf8_kept_lossily() {
        let line = LogLine::parse(b"2026-11-26T06:25:08.123Z err bad \xff byte\n");
        assert_eq!(
            line,
            Some(LogLine {
                timestamp: "2026-11-26T06:25:08.123Z".into(),
                stream: Stream::Stderr,
                text: "bad \u{fffd} byte".into()
            })
        );
    }

    /// Writes `input` into a pipe in pieces of irregular sizes (lines split anywhere),
    /// with a pause now and then so the pump drains the pipe and waits again, and
    /// pumps the other end into `log` until the writer closes it.
    async fn pump_through_a_pipe(log: &Arc<ServiceLog>, input: Vec<u8>) -> io::Result<()> {
        let (read, write) = nix::unistd::pipe()?;
        let writer = std::thread::spawn(move || -> io::Result<()> {
            let mut pipe = File::from(write);
            let sizes = [1, 7, 100, 4_093, 65_536, 13, 300_000, 99];
            let mut at = 0;
            for round in 0.. {
                if at == input.len() {
                    break;
                }
                let size = sizes[round % sizes.len()].min(input.len() - at);
                pipe.write_all(&input[at..at + size])?;
                at += size;
                if round % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(())
        });
        let reader = pipe::Receiver::from_owned_fd(read)?;
        tokio::spawn(log.clone().pump(reader, Stream::Stdout))
            .await
            .map_err(io::Error::other)?;
        writer
            .join()
            .map_err(|_| io::Error::other("the writer panicked"))?
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pump_keeps_every_line_in_order_and_finishes_a_partial_one() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 0, 3, LogHub::default())?;
        // 50,000 short lines, then a flood of 100-byte ones (full reads: the pump grows
        // its buffer and yields), then a final line without its newline.
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for n in 0..50_000 {
            expected.push(format!("line {n}"));
        }
        for n in 0..100_000 {
            expected.push(format!("flood {n:010} {}", "x".repeat(82)));
        }
        for line in &expected {
            input.extend_from_slice(line.as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(b"tail without newline");
        expected.push("tail without newline".into());
        pump_through_a_pipe(&log, input).await?;
        let (lines, _) = read_from(&log_path(dir.path(), "svc"), 0)?;
        let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts.len(), expected.len());
        if let Some(at) = (0..texts.len()).find(|at| texts[*at] != expected[*at]) {
            panic!("line {at} is {:?}, expected {:?}", texts[at], expected[at]);
        }
        assert!(lines.iter().all(|line| line.stream == Stream::Stdout));
        assert!(
            lines
                .windows(2)
                .all(|pair| pair[0].timestamp <= pair[1].timestamp),
            "timestamps go back"
        );
        let tail = read_tail(dir.path(), "svc", 2)?;
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                expected[expected.len() - 2].as_str(),
                "tail without newline"
            ]
        );
        Ok(())
    }

    #[test]
    fn rotation_keeps_the_newest_lines_and_at_most_keep_files() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 2_000, 2, LogHub::default())?;
        for n in 0..500 {
            log.write_fleet_line(&format!("entry {n}"));
        }
        let tail = read_tail(dir.path(), "svc", 5)?;
        assert_eq!(tail.last().map(|l| l.text.as_str()), Some("entry 499"));
        assert!(dir.path().join("svc.log.1").exists());
        assert!(dir.path().join("svc.log.2").exists());
        assert!(!dir.path().join("svc.log.3").exists());
        let size = std::fs::metadata(dir.path().join("svc.log"))?.len();
        assert!(size <= 2_000, "live file is {size} bytes");
        Ok(())
    }

    /// Appends `texts` to `path` as stdout lines, the way the supervisor writes them.
    fn append(path: &Path, texts: &[&str]) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        for text in texts {
            writeln!(file, "{} out {text}", format_timestamp(now_ms()))?;
        }
        Ok(())
    }

    /// What the follower returns until `expected` lines of `service` came, or 10 s.
    fn collect(follower: &mut LogFollower, service: &str, expected: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut texts = Vec::new();
        while texts.len() < expected && std::time::Instant::now() < deadline {
            for (from, lines) in follower.next_lines() {
                assert_eq!(from, service, "lines of an unfollowed service");
                texts.extend(lines.into_iter().map(|line| line.text));
            }
        }
        texts
    }

    #[test]
    fn a_follower_reads_appends_from_the_end_and_a_rotated_file_from_its_start() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = log_path(dir.path(), "svc");
        append(&path, &["before"])?;
        append(&log_path(dir.path(), "other"), &["not followed"])?;
        let mut follower = LogFollower::new(dir.path().to_path_buf(), vec!["svc".into()]);
        assert!(follower.watching());
        append(&path, &["one", "two"])?;
        assert_eq!(collect(&mut follower, "svc", 2), ["one", "two"]);
        // A partial line waits for its newline.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(format!("{} out thr", format_timestamp(now_ms())).as_bytes())?;
        append(&log_path(dir.path(), "other"), &["still not followed"])?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(b"ee\n")?;
        assert_eq!(collect(&mut follower, "svc", 1), ["three"]);
        // Rotation: the file gets a last line, moves aside, and a new one, already
        // longer than the old offset, takes its place, all between two reads.
        append(&path, &["last before rotation"])?;
        std::fs::rename(&path, dir.path().join("svc.log.1"))?;
        let long: Vec<String> = (0..20).map(|n| format!("after rotation {n}")).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        append(&path, &long)?;
        let mut expected = vec!["last before rotation"];
        expected.extend(long);
        assert_eq!(collect(&mut follower, "svc", 21), expected);
        Ok(())
    }

    #[test]
    fn a_file_added_to_a_follower_is_read_from_where_it_ended_when_it_was_named() -> io::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let mut follower = LogFollower::new(dir.path().to_path_buf(), vec!["web".into()]);
        let replica = log_path(dir.path(), "web.2");
        append(&replica, &["from an earlier run"])?;
        let file = Followed::at_end(dir.path(), "web.2".into());
        // Written after the name was known, before the follower took it.
        append(&replica, &["first"])?;
        assert!(follower.next_lines().is_empty(), "not followed yet");
        follower.add(file);
        append(&replica, &["second"])?;
        assert_eq!(collect(&mut follower, "web.2", 2), ["first", "second"]);
        let again = Followed::at_end(dir.path(), "web.2".into());
        follower.add(again);
        append(&replica, &["third"])?;
        assert_eq!(
            collect(&mut follower, "web.2", 1),
            ["third"],
            "followed once"
        );
        Ok(())
    }

    #[test]
    fn a_follower_without_its_folder_polls_and_watches_once_the_folder_exists() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("logs");
        let mut follower = LogFollower::new(dir.clone(), vec!["svc".into()]);
        assert!(!follower.watching());
        std::fs::create_dir(&dir)?;
        append(&log_path(&dir, "svc"), &["first"])?;
        assert_eq!(collect(&mut follower, "svc", 1), ["first"]);
        assert!(follower.watching());
        // The folder removed (the watch notices at once) and made again (a fresh
        // `.fleet`): watched again.
        std::fs::remove_dir_all(&dir)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while follower.watching() && std::time::Instant::now() < deadline {
            assert!(follower.next_lines().is_empty());
        }
        assert!(!follower.watching(), "the removed folder is not watched");
        std::fs::create_dir(&dir)?;
        append(&log_path(&dir, "svc"), &["second"])?;
        assert_eq!(collect(&mut follower, "svc", 1), ["second"]);
        append(&log_path(&dir, "svc"), &["third"])?;
        assert_eq!(collect(&mut follower, "svc", 1), ["third"]);
        Ok(())
    }

    #[test]
    fn a_follower_far_behind_a_flood_skips_to_near_the_end_only_when_asked() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = log_path(dir.path(), "svc");
        let flood: Vec<String> = (0..2_000).map(|n| format!("flood {n:04}")).collect();
        let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
        let mut everything = LogFollower::new(dir.path().to_path_buf(), vec!["svc".into()]);
        let mut live =
            LogFollower::new(dir.path().to_path_buf(), vec!["svc".into()]).skip_when_behind(4_096);
        append(&path, &flood)?;
        assert_eq!(collect(&mut everything, "svc", 2_000), flood);
        let skipped = collect(&mut live, "svc", 1);
        assert!(
            !skipped.is_empty() && skipped.len() < 100,
            "{} lines",
            skipped.len()
        );
        assert_eq!(skipped.last().map(String::as_str), Some("flood 1999"));
        Ok(())
    }

    /// Lines as `write_lines` makes them, stamped `at_ms`.
    fn stamped(at_ms: u64, texts: &[&str]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for text in texts {
            bytes.extend_from_slice(format!("{} out {text}\n", format_timestamp(at_ms)).as_bytes());
        }
        bytes
    }

    /// What a log reported, as the supervisor would get it.
    type Incidents = Arc<Mutex<Vec<EventKind>>>;

    /// A log whose incidents are collected.
    fn watched_log(dir: &Path) -> io::Result<(Arc<ServiceLog>, Incidents)> {
        let log = ServiceLog::open(dir, "svc", 0, 3, LogHub::default())?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        log.report_incidents(move |event| {
            if let Ok(mut seen) = sink.lock() {
                seen.push(event);
            }
        });
        Ok((log, seen))
    }

    fn taken(seen: &Mutex<Vec<EventKind>>) -> Vec<EventKind> {
        seen.lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    /// `/dev/full` fails every write with ENOSPC, as a full disk does.
    #[test]
    fn a_log_that_cannot_be_written_drops_counts_says_so_once_and_resumes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = log_path(dir.path(), "svc");
        std::os::unix::fs::symlink("/dev/full", &path)?;
        let (log, seen) = watched_log(dir.path())?;
        let t0 = now_ms();
        log.append(&stamped(t0, &["one", "two"]), t0);
        let dropping = taken(&seen);
        assert_eq!(dropping.len(), 1, "{dropping:?}");
        assert!(
            matches!(&dropping[0], EventKind::LogDropping { reason } if reason.contains("No space left")),
            "{dropping:?}"
        );
        // More lines, within and after the retry period: counted, not said again.
        log.append(&stamped(t0 + 10, &["three"]), t0 + 10);
        log.append(&stamped(t0 + 300, &["four", "five"]), t0 + 300);
        assert_eq!(taken(&seen), vec![]);
        // Space comes back (the path now names a writable file).
        std::fs::remove_file(&path)?;
        std::fs::write(&path, b"")?;
        log.append(&stamped(t0 + 400, &["six"]), t0 + 400);
        assert_eq!(
            taken(&seen),
            vec![],
            "within the retry period: still dropped"
        );
        log.append(&stamped(t0 + 700, &["seven"]), t0 + 700);
        assert_eq!(
            taken(&seen),
            vec![EventKind::LogResumed {
                dropped: 6,
                over_ms: 700
            }]
        );
        let (lines, _) = read_from(&path, 0)?;
        let texts: Vec<(Stream, &str)> =
            lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                (
                    Stream::Fleet,
                    "log file written again: 6 lines dropped over 700ms"
                ),
                (Stream::Stdout, "seven"),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_removed_log_folder_is_made_again_and_keeps_what_went_into_the_removed_file(
    ) -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("logs");
        let (log, seen) = watched_log(&dir)?;
        let t0 = now_ms();
        log.append(&stamped(t0, &["before"]), t0);
        std::fs::remove_dir_all(&dir)?;
        // Written between the removal and the next check: into the removed file.
        log.append(&stamped(t0 + 10, &["after the removal"]), t0 + 10);
        assert!(!dir.exists());
        log.append(&stamped(t0 + 300, &["later"]), t0 + 300);
        assert_eq!(taken(&seen), vec![EventKind::LogRecreated]);
        let (lines, _) = read_from(&log_path(&dir, "svc"), 0)?;
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            // Everything since the last check (at the open) is carried over.
            vec![
                "before",
                "after the removal",
                "the log file was removed while fleet ran; made it again",
                "later"
            ]
        );
        // A file replaced by another (a rotation by another tool) is written on
        // quietly, without carrying anything over.
        let path = log_path(&dir, "svc");
        std::fs::rename(&path, dir.join("svc.log.old"))?;
        std::fs::write(&path, b"")?;
        log.append(&stamped(t0 + 600, &["in the new file"]), t0 + 600);
        assert_eq!(taken(&seen), vec![]);
        let (lines, _) = read_from(&path, 0)?;
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["in the new file"]);
        Ok(())
    }
}
