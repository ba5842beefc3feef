//! Log files: every line of a fast writer, whole lines, bytes as written.

use std::io::BufRead;
use std::time::Duration;

use crate::support::Project;

/// A million `--print` lines: ~100 MB through a pipe, ~130 MB of log file.
const LINES: u64 = 1_000_000;
/// Generous: a slow CI machine writes the lot in well under this.
const FLOOD_WAIT: Duration = Duration::from_secs(180);

/// The text of `--print` line `number` (see examples/helper.rs): `line `, ten digits,
/// a space, then `x` up to 99 bytes.
fn print_line(number: u64) -> Vec<u8> {
    let mut line = format!("line {number:010} ").into_bytes();
    line.resize(99, b'x');
    line
}

#[test]
fn the_log_file_holds_every_line_of_a_fast_writer() {
    let project = Project::new().var("lines", LINES).manifest(
        r#"
[project]
log_max_size = "1GB"     # no rotation: every line stays in the one file

[services.flood]
command = "{helper} --print {lines}"
restart = "never"

[services.edge]
command = ["{helper}", "--invalid-utf8", "--no-newline", "the last words, no newline"]
restart = "never"
"#,
    );
    let mut fleet = project.up(&["--no-tui"]);
    fleet.wait_for_output("edge: exited with code 0", FLOOD_WAIT);
    fleet.wait_for_output("flood: exited with code 0", FLOOD_WAIT);

    // Streamed: the file is ~130 MB.
    let log = std::fs::File::open(project.log_path("flood")).expect("flood.log exists");
    let mut log = std::io::BufReader::with_capacity(1 << 20, log);
    let mut line = Vec::with_capacity(256);
    let mut expected = 1;
    loop {
        line.clear();
        let read = log
            .read_until(b'\n', &mut line)
            .expect("cannot read flood.log");
        if read == 0 {
            break;
        }
        assert_eq!(line.pop(), Some(b'\n'), "the log ends in a partial line");
        let line = line.as_slice();
        let tag = line.get(25..28);
        assert!(
            line.len() > 29 && line[24] == b' ' && line[28] == b' ',
            "malformed log line {:?}",
            String::from_utf8_lossy(line)
        );
        match tag {
            Some(b"out") => {
                let text = &line[29..];
                if text != print_line(expected).as_slice() {
                    panic!(
                        "out line {expected} is {:?} (expected {:?})",
                        String::from_utf8_lossy(text),
                        String::from_utf8_lossy(&print_line(expected))
                    );
                }
                expected += 1;
            }
            Some(b"---") => {}
            _ => panic!("unexpected line {:?}", String::from_utf8_lossy(line)),
        }
    }
    assert_eq!(expected - 1, LINES, "out lines in flood.log");

    let edge = project.log_bytes("edge");
    let out_texts: Vec<&[u8]> = edge
        .split_inclusive(|byte| *byte == b'\n')
        .filter(|line| line.get(25..28) == Some(b"out"))
        .map(|line| &line[29..])
        .collect();
    assert_eq!(
        out_texts,
        [
            b"invalid utf8: \xff\xfe\n".as_slice(),
            b"the last words, no newline\n".as_slice()
        ],
        "edge.log: {:?}",
        String::from_utf8_lossy(&edge)
    );
}
