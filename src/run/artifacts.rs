//! Files a run writes at its end besides the logs: `merged.log`, every log line of the
//! run in time order, labelled; and the small helpers that read logs back for the
//! summary and JUnit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The label of CMD's lines in `merged.log`: brackets cannot start a service name.
pub(super) const COMMAND_LABEL: &str = "[cmd]";

/// Width of the timestamp that starts every log line (`2026-11-26T06:25:08.123Z`).
const TIMESTAMP_LEN: usize = 24;

/// Writes `out`: the lines of every `(label, file)` merged by their timestamps (each
/// file is already in time order, so this is a streaming k-way merge and holds one
/// line per file in memory), each as `<timestamp> <label> <tag> <text>`. Lines with
/// equal timestamps keep the order of `sources`. Returns how many lines it wrote.
pub(super) fn write_merged(out: &Path, sources: &[(String, PathBuf)]) -> io::Result<u64> {
    let mut readers: Vec<(String, BufReader<File>)> = Vec::new();
    for (label, path) in sources {
        match File::open(path) {
            Ok(file) => readers.push((label.clone(), BufReader::new(file))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    let mut heads: Vec<Option<Vec<u8>>> = Vec::with_capacity(readers.len());
    let mut heap = BinaryHeap::new();
    for (index, (_, reader)) in readers.iter_mut().enumerate() {
        let line = next_line(reader)?;
        if let Some(line) = &line {
            heap.push(Reverse((key(line), index)));
        }
        heads.push(line);
    }
    let mut writer = BufWriter::new(File::create(out)?);
    let mut written = 0;
    while let Some(Reverse((_, index))) = heap.pop() {
        let Some(line) = heads[index].take() else {
            continue;
        };
        let label = &readers[index].0;
        match line.get(..TIMESTAMP_LEN) {
            Some(timestamp) if line.get(TIMESTAMP_LEN) == Some(&b' ') => {
                writer.write_all(timestamp)?;
                writer.write_all(b" ")?;
                writer.write_all(label.as_bytes())?;
                writer.write_all(&line[TIMESTAMP_LEN..])?;
            }
            // Not a log line (a file cut short): kept, labelled, at its place.
            _ => {
                writer.write_all(label.as_bytes())?;
                writer.write_all(b" ")?;
                writer.write_all(&line)?;
            }
        }
        if !line.ends_with(b"\n") {
            writer.write_all(b"\n")?;
        }
        written += 1;
        let next = next_line(&mut readers[index].1)?;
        if let Some(next) = &next {
            heap.push(Reverse((key(next), index)));
        }
        heads[index] = next;
    }
    writer.flush()?;
    Ok(written)
}

fn next_line(reader: &mut BufReader<File>) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line)? {
        0 => Ok(None),
        _ => Ok(Some(line)),
    }
}

/// The sort key of a line: its timestamp (fixed width, so bytes sort by time).
fn key(line: &[u8]) -> Vec<u8> {
    line.get(..TIMESTAMP_LEN).unwrap_or(line).to_vec()
}

/// The last `count` lines of a log, as text, for a JUnit test case.
pub(super) fn tail(dir: &Path, name: &str, count: usize) -> Vec<String> {
    crate::logs::read_tail(dir, name, count)
        .map(|lines| lines.into_iter().map(|line| line.text).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_merge_by_time_and_keep_each_files_order() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(
            &a,
            "2026-11-26T06:25:08.100Z out a1\n2026-11-26T06:25:08.300Z err a2\n2026-11-26T06:25:08.300Z out a3",
        )?;
        std::fs::write(
            &b,
            "2026-11-26T06:25:08.200Z --- b1\n2026-11-26T06:25:08.300Z out b2\n",
        )?;
        let out = dir.path().join("merged.log");
        let written = write_merged(
            &out,
            &[
                ("web.1".into(), a),
                ("[cmd]".into(), b),
                ("gone".into(), dir.path().join("missing.log")),
            ],
        )?;
        assert_eq!(written, 5);
        assert_eq!(
            std::fs::read_to_string(&out)?,
            "2026-11-26T06:25:08.100Z web.1 out a1\n\
             2026-11-26T06:25:08.200Z [cmd] --- b1\n\
             2026-11-26T06:25:08.300Z web.1 err a2\n\
             2026-11-26T06:25:08.300Z web.1 out a3\n\
             2026-11-26T06:25:08.300Z [cmd] out b2\n"
        );
        Ok(())
    }
}
