//! `msglog read`: reads a log (either format) from a file or standard input,
//! checks every record, and prints them as JSON lines; `--follow` keeps
//! reading as the log grows, `--lenient` reports bad records and goes on.
//!
//! The pure parts ([`Scanner`], [`preview`], [`Tally`]) split a byte stream
//! into records with their numbers and offsets, whatever pieces it arrives
//! in; the rest moves bytes from the file to them and the records to stdout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use msglog::proto::jsonl::encode_json_line;
use msglog::proto::{
    decode_json_record, decode_record, encode_json_record, is_dangerous_char, JsonContext,
    LogFormat,
};

use super::FormatArg;

/// Exit status: every record read is valid.
const EXIT_OK: u8 = 0;
/// Exit status: a bad record was found (without --lenient reading stopped
/// there; with it, bad records were skipped).
const EXIT_BAD_RECORD: u8 = 1;
/// Exit status: the log could not be read, or the output not written.
pub(crate) const EXIT_CANNOT_READ: u8 = 3;

const READ_HELP: &str = "\
Each record is printed as one JSON object per line: `name` and `message`
(base64 with `<field>_encoding` when not UTF-8), and for a JSON-lines log
also `ts` and `peer`. A bad record is shown with its number and byte offset.

--follow waits for records to be appended, as `tail -f` does: an incomplete
last record is waited for, not reported. When the log is rotated (moved
away and recreated, as with logrotate and SIGHUP), it reads the rest of the
old file, then the new one. Ctrl-C ends it.

Exit status:
  0  every record read is valid
  1  a bad record: reading stopped there (with --lenient: bad records were
     reported, skipped and counted)
  2  usage error
  3  the log could not be read (missing, unreadable, in neither format), or
     the output could not be written";

#[derive(Debug, clap::Args)]
#[command(after_help = READ_HELP)]
pub struct ReadArgs {
    /// The log file; `-` reads standard input; nats://HOST:PORT[,HOST:PORT...]
    /// reads the JetStream stream --nats-stream.
    #[arg(value_name = "LOG")]
    path: PathBuf,
    /// With a nats:// LOG: the JetStream stream to read.
    #[arg(long, value_name = "NAME", default_value = msglog::defaults::NATS_STREAM)]
    nats_stream: String,
    /// Format of the log; by default guessed from its first byte (`[` text, `{` JSON lines).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Only check the log and print the number of valid records.
    #[arg(long)]
    check: bool,
    /// Keep reading as records are appended, until Ctrl-C (not with `-`).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Report each bad record, skip it and go on; a summary at the end
    /// counts them. For logs of the original server, which can hold records
    /// msglog never writes.
    #[arg(long)]
    lenient: bool,
}

/// Bytes read from the log at a time.
const CHUNK: usize = 64 * 1024;
/// How often --follow looks for new records.
const POLL: Duration = Duration::from_millis(200);
/// After the log was moved away and recreated, --follow keeps reading the
/// old file until it has been quiet this long (the server writes to it until
/// it reopens the log).
const ROTATION_GRACE: Duration = Duration::from_secs(1);
/// Characters of a bad record shown in its report.
const PREVIEW_CHARS: usize = 100;

/// One line of the log, cut at its format's terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based position among the lines (good or bad) of the log.
    pub number: u64,
    /// Byte offset of its first byte in the input.
    pub offset: u64,
    /// The line with its terminator, or, for a line longer than any
    /// record, its first `max_record_len + 1` bytes.
    pub bytes: Vec<u8>,
}

/// Splits a byte stream into lines, whatever pieces it arrives in. A line
/// longer than any record is cut short (its rest is skipped up to the next
/// terminator), so memory stays bounded whatever the input.
#[derive(Debug)]
pub struct Scanner {
    format: LogFormat,
    /// Input not yet cut into lines: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` known to hold no terminator.
    searched: usize,
    /// Offset in the input of `buf[start]`.
    offset: u64,
    /// Lines produced so far.
    lines: u64,
    /// Dropping the rest of an over-long line.
    skipping: bool,
}

impl Scanner {
    pub fn new(format: LogFormat) -> Scanner {
        Scanner {
            format,
            buf: Vec::new(),
            start: 0,
            searched: 0,
            offset: 0,
            lines: 0,
            skipping: false,
        }
    }

    /// Adds bytes that follow those already pushed.
    pub fn push(&mut self, bytes: &[u8]) {
        // Lines are taken by moving `start`; what they left is dropped here,
        // once per push rather than once per line.
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, or the head of an over-long one.
    pub fn next_line(&mut self) -> Option<Line> {
        let terminator = self.format.terminator();
        let max = self.format.max_record_len();
        loop {
            let pending = &self.buf[self.start..];
            // A terminator may start in the last bytes already searched.
            let from = self.searched.saturating_sub(terminator.len() - 1);
            let end = pending[from..]
                .windows(terminator.len())
                .position(|w| w == terminator)
                .map(|i| from + i + terminator.len());
            // Up to the terminator found, or all of it.
            self.searched = end.map_or(pending.len(), |end| end - terminator.len());
            if self.skipping {
                // The over-long line was reported; its rest is not a line.
                match end {
                    Some(end) => {
                        self.consume(end);
                        self.skipping = false;
                        continue;
                    }
                    None => {
                        // Keep a possible first half of the terminator.
                        let keep = usize::from(pending.ends_with(&terminator[..1]));
                        self.consume(pending.len() - keep);
                        return None;
                    }
                }
            }
            return match end {
                Some(end) if end <= max => Some(self.take(end)),
                _ if pending.len() > max => {
                    // Longer than any record: report its head, drop the rest.
                    let line = self.take(max + 1);
                    self.skipping = !line.bytes.ends_with(terminator);
                    Some(line)
                }
                _ => None,
            };
        }
    }

    /// At the end of the input: the incomplete last line, if any.
    pub fn finish(&mut self) -> Option<Line> {
        let pending = self.buf.len() - self.start;
        if self.skipping || pending == 0 {
            self.consume(pending);
            return None;
        }
        Some(self.take(pending))
    }

    fn take(&mut self, len: usize) -> Line {
        self.lines += 1;
        let line = Line {
            number: self.lines,
            offset: self.offset,
            bytes: self.buf[self.start..self.start + len].to_vec(),
        };
        self.consume(len);
        line
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.searched = self.searched.saturating_sub(len);
        self.offset += len as u64;
    }

    /// Starts over on a new input (a rotated or truncated log): offsets
    /// from 0, line numbers go on.
    pub fn restart(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.searched = 0;
        self.offset = 0;
        self.skipping = false;
    }
}

/// The JSON line `msglog read` prints for a line of the log, or why the
/// line is not a record.
pub fn decode(format: LogFormat, line: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match format {
        LogFormat::Text => {
            let r = decode_record(line).map_err(|e| e.to_string())?;
            encode_json_line(&mut out, None, &r.name, &r.message);
        }
        LogFormat::Jsonl => {
            let r = decode_json_record(line).map_err(|e| e.to_string())?;
            let context = JsonContext {
                timestamp: r.timestamp,
                peer: r.peer,
            };
            encode_json_record(&mut out, &context, &r.name, &r.message);
        }
    }
    Ok(out)
}

/// A bad record for a person: its first characters, quoted, with every
/// control, invisible or direction-changing character and every byte that
/// is not UTF-8 escaped, so that the report is one line and shows exactly
/// what is there.
pub fn preview(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut shown = 0;
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == PREVIEW_CHARS {
                break 'chunks;
            }
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if is_dangerous_char(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
                c => out.push(c),
            }
            shown += 1;
        }
        for b in chunk.invalid() {
            if shown == PREVIEW_CHARS {
                break 'chunks;
            }
            out.push_str(&format!("\\x{b:02x}"));
            shown += 1;
        }
    }
    out.push('"');
    let total = bytes.utf8_chunks().fold(0, |n, chunk| {
        n + chunk.valid().chars().count() + chunk.invalid().len()
    });
    if shown < total {
        out.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    out
}

/// Counts of one run, and what they mean for the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub good: u64,
    pub bad: u64,
}

impl Tally {
    pub fn exit_code(&self) -> u8 {
        if self.bad == 0 {
            EXIT_OK
        } else {
            EXIT_BAD_RECORD
        }
    }

    /// The summary of a lenient run.
    pub fn summary(&self) -> String {
        let records = |n: u64| if n == 1 { "record" } else { "records" };
        format!(
            "{} valid {} read, {} bad {} skipped",
            self.good,
            records(self.good),
            self.bad,
            records(self.bad)
        )
    }
}

/// Where a run stands after a piece of input.
enum Flow {
    Go,
    /// A bad record without --lenient, or stdout went away.
    Stop,
}

/// Why reading ended early.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read {path}: {source}")]
    Input { path: String, source: io::Error },
    #[error("{path} is neither a text log (starts with `[`) nor a JSON-lines log (starts with `{{`); pass --format text or --format jsonl")]
    UnknownFormat { path: String },
    #[error("cannot write the records: {0}")]
    Output(io::Error),
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(io::Error),
}

/// One run: turns input bytes into output lines and reports.
struct Reader<W: Write> {
    name: String,
    format: Option<LogFormat>,
    scanner: Option<Scanner>,
    check: bool,
    lenient: bool,
    tally: Tally,
    out: W,
    /// Stdout was closed by its reader (`msglog read log | head`).
    out_closed: bool,
}

impl<W: Write> Reader<W> {
    /// Takes the next bytes of the input.
    fn push(&mut self, bytes: &[u8]) -> Result<Flow, ReadError> {
        if self.scanner.is_none() {
            if bytes.is_empty() {
                return Ok(Flow::Go);
            }
            let format = match self.format.or_else(|| LogFormat::by_first_byte(bytes)) {
                Some(f) => f,
                None => {
                    return Err(ReadError::UnknownFormat {
                        path: self.name.clone(),
                    })
                }
            };
            self.format = Some(format);
            self.scanner = Some(Scanner::new(format));
        }
        let Some(scanner) = self.scanner.as_mut() else {
            return Ok(Flow::Go);
        };
        scanner.push(bytes);
        while let Some(line) = self.scanner.as_mut().and_then(Scanner::next_line) {
            if let Flow::Stop = self.line(&line)? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Go)
    }

    /// At the end of the input: an incomplete last record is bad.
    fn finish(&mut self) -> Result<Flow, ReadError> {
        match self.scanner.as_mut().and_then(Scanner::finish) {
            Some(line) => self.line(&line),
            None => Ok(Flow::Go),
        }
    }

    fn line(&mut self, line: &Line) -> Result<Flow, ReadError> {
        let Some(format) = self.format else {
            return Ok(Flow::Go);
        };
        match decode(format, &line.bytes) {
            Ok(json) => {
                self.tally.good += 1;
                if !self.check && !self.out_closed {
                    if let Err(e) = self.out.write_all(&json) {
                        return self.output_failed(e);
                    }
                }
                Ok(Flow::Go)
            }
            Err(why) => {
                self.tally.bad += 1;
                self.flush()?;
                eprintln!(
                    "msglog read: {}: record {} at byte {}: {why}: {}",
                    self.name,
                    line.number,
                    line.offset,
                    preview(&line.bytes)
                );
                Ok(if self.lenient { Flow::Go } else { Flow::Stop })
            }
        }
    }

    fn flush(&mut self) -> Result<Flow, ReadError> {
        if self.out_closed {
            return Ok(Flow::Stop);
        }
        match self.out.flush() {
            Ok(()) => Ok(Flow::Go),
            Err(e) => self.output_failed(e),
        }
    }

    fn output_failed(&mut self, e: io::Error) -> Result<Flow, ReadError> {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // Whoever reads our output has what they wanted.
            self.out_closed = true;
            return Ok(Flow::Stop);
        }
        Err(ReadError::Output(e))
    }

    /// Prints the count or the summary; the exit status.
    fn end(mut self) -> ExitCode {
        if self.check && !self.out_closed {
            let _ = writeln!(self.out, "{} records", self.tally.good);
        }
        if let Err(ReadError::Output(e)) = self.flush() {
            eprintln!("msglog read: cannot write the records: {e}");
            return ExitCode::from(EXIT_CANNOT_READ);
        }
        if self.lenient {
            eprintln!("msglog read: {}: {}", self.name, self.tally.summary());
        }
        ExitCode::from(self.tally.exit_code())
    }
}

/// Runs `msglog read`.
pub fn run(args: ReadArgs) -> ExitCode {
    if let Some(url) = args.path.to_str().filter(|p| p.starts_with("nats://")) {
        if args.format.is_some() {
            eprintln!("msglog read: --format does not apply to a NATS stream, whose messages are read as msglog stored them; drop --format");
            return ExitCode::from(2);
        }
        return super::nats::read(super::nats::ReadStream {
            url,
            stream: &args.nats_stream,
            check: args.check,
            follow: args.follow,
            lenient: args.lenient,
        });
    }
    let stdin = args.path == Path::new("-");
    if stdin && args.follow {
        eprintln!("msglog read: --follow needs a file: standard input is read until it ends anyway; drop --follow, or give the log's path");
        return ExitCode::from(2);
    }
    let stdout = io::stdout();
    let mut reader = Reader {
        name: if stdin {
            "standard input".to_string()
        } else {
            args.path.display().to_string()
        },
        format: args.format.map(LogFormat::from),
        scanner: None,
        check: args.check,
        lenient: args.lenient,
        tally: Tally::default(),
        out: io::BufWriter::new(stdout.lock()),
        out_closed: false,
    };
    let result = if stdin {
        read_to_end(&mut io::stdin().lock(), &mut reader)
    } else if args.follow {
        follow(&args.path, &mut reader)
    } else {
        match File::open(&args.path) {
            Ok(mut file) => read_to_end(&mut file, &mut reader),
            Err(source) => Err(ReadError::Input {
                path: reader.name.clone(),
                source,
            }),
        }
    };
    match result {
        Ok(()) => reader.end(),
        Err(e) => {
            let _ = reader.flush();
            eprintln!("msglog read: {e}");
            ExitCode::from(EXIT_CANNOT_READ)
        }
    }
}

fn read_to_end<W: Write>(input: &mut impl Read, reader: &mut Reader<W>) -> Result<(), ReadError> {
    let mut chunk = vec![0; CHUNK];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ReadError::Input {
                    path: reader.name.clone(),
                    source,
                })
            }
        };
        if let Flow::Stop = reader.push(&chunk[..n])? {
            return Ok(());
        }
    }
    reader.finish()?;
    Ok(())
}

/// The identity of a file, to notice that its path now names another one.
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

/// The file being followed.
struct Followed {
    file: File,
    identity: (u64, u64),
    /// Bytes read from it so far.
    position: u64,
    /// Since when its path has named another file while it stayed quiet.
    replaced_since: Option<Instant>,
}

impl Followed {
    fn open(path: &Path, name: &str) -> Result<Followed, ReadError> {
        let input_error = |source| ReadError::Input {
            path: name.to_string(),
            source,
        };
        let file = File::open(path).map_err(input_error)?;
        let identity = identity(&file.metadata().map_err(input_error)?);
        Ok(Followed {
            file,
            identity,
            position: 0,
            replaced_since: None,
        })
    }
}

/// Reads `path` and then whatever is appended to it, until Ctrl-C.
fn follow<W: Write>(path: &Path, reader: &mut Reader<W>) -> Result<(), ReadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReadError::Signal)?;
    runtime.block_on(async {
        // Registered before the first read, so that an early Ctrl-C ends the
        // run with its summary instead of killing the process.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(ReadError::Signal)?;
        let mut current = Followed::open(path, &reader.name)?;
        let mut chunk = vec![0; CHUNK];
        loop {
            let mut grew = false;
            loop {
                let n = match current.file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(ReadError::Input {
                            path: reader.name.clone(),
                            source,
                        })
                    }
                };
                grew = true;
                current.position += n as u64;
                if let Flow::Stop = reader.push(&chunk[..n])? {
                    return Ok(());
                }
            }
            if let Flow::Stop = reader.flush()? {
                return Ok(());
            }
            if let Flow::Stop = check_rotation(path, &mut current, grew, reader)? {
                return Ok(());
            }
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

/// Notices a log that was truncated, or moved away and replaced, and goes
/// on with the file its path names now.
fn check_rotation<W: Write>(
    path: &Path,
    current: &mut Followed,
    grew: bool,
    reader: &mut Reader<W>,
) -> Result<Flow, ReadError> {
    // Moved away and not recreated yet: keep reading the old file.
    let Ok(now) = std::fs::metadata(path) else {
        return Ok(Flow::Go);
    };
    if identity(&now) == current.identity {
        current.replaced_since = None;
        if now.len() < current.position {
            eprintln!(
                "msglog read: {} was truncated; reading it again from its start",
                reader.name
            );
            *current = Followed::open(path, &reader.name)?;
            if let Some(scanner) = reader.scanner.as_mut() {
                scanner.restart();
            }
        }
        return Ok(Flow::Go);
    }
    if grew {
        current.replaced_since = None;
        return Ok(Flow::Go);
    }
    let since = *current.replaced_since.get_or_insert_with(Instant::now);
    if since.elapsed() < ROTATION_GRACE {
        return Ok(Flow::Go);
    }
    // The old file is done: an incomplete record in it stays incomplete.
    if let Flow::Stop = reader.finish()? {
        return Ok(Flow::Stop);
    }
    if let Some(scanner) = reader.scanner.as_mut() {
        scanner.restart();
    }
    *current = Followed::open(path, &reader.name)?;
    Ok(Flow::Go)
}

#[cfg(test)]
mod tests {
    use super::*;
    use msglog::proto::{record, MAX_TEXT_RECORD_LEN};

    fn lines(format: LogFormat, pieces: &[&[u8]]) -> (Vec<Line>, Option<Line>) {
        let mut scanner = Scanner::new(format);
        let mut out = Vec::new();
        for piece in pieces {
            scanner.push(piece);
            while let Some(line) = scanner.next_line() {
                out.push(line);
            }
        }
        (out, scanner.finish())
    }

    #[test]
    fn lines_are_numbered_with_their_offsets_whatever_the_pieces() {
        let log = b"[a]: one\r\n[b]: two\r\n[c]: thr";
        let whole = lines(LogFormat::Text, &[log]);
        let bytewise: Vec<&[u8]> = log.chunks(1).collect();
        assert_eq!(lines(LogFormat::Text, &bytewise), whole);
        let (got, tail) = whole;
        assert_eq!(
            got,
            [
                Line {
                    number: 1,
                    offset: 0,
                    bytes: b"[a]: one\r\n".to_vec()
                },
                Line {
                    number: 2,
                    offset: 10,
                    bytes: b"[b]: two\r\n".to_vec()
                },
            ]
        );
        assert_eq!(
            tail,
            Some(Line {
                number: 3,
                offset: 20,
                bytes: b"[c]: thr".to_vec()
            })
        );
    }

    #[test]
    fn a_text_line_ends_only_at_cr_lf_and_a_json_line_at_lf() {
        let (got, tail) = lines(LogFormat::Text, &[b"[a]: x\ny\r\n"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, b"[a]: x\ny\r\n");
        assert_eq!(tail, None);
        let (got, _) = lines(LogFormat::Jsonl, &[b"{}\n{}\n"]);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_its_rest_skipped() {
        let mut log = b"[a]: ".to_vec();
        log.extend(std::iter::repeat_n(b'x', 3 * MAX_TEXT_RECORD_LEN));
        log.extend_from_slice(b"\r\n[b]: after\r\n");
        for piece in [log.len(), 4096, 1000] {
            let pieces: Vec<&[u8]> = log.chunks(piece).collect();
            let (got, tail) = lines(LogFormat::Text, &pieces);
            assert_eq!(got.len(), 2, "pieces of {piece}");
            assert_eq!(got[0].bytes.len(), MAX_TEXT_RECORD_LEN + 1);
            assert!(decode(LogFormat::Text, &got[0].bytes)
                .unwrap_err()
                .contains("longer than any record"));
            assert_eq!(got[1].bytes, b"[b]: after\r\n");
            assert_eq!((got[1].number, got[1].offset), (2, log.len() as u64 - 12));
            assert_eq!(tail, None);
        }
    }

    #[test]
    fn the_longest_record_is_a_line_and_decodes() {
        let longest = record(&[0xFF; 65_535], &[0xFF; 65_535]);
        let (got, tail) = lines(LogFormat::Text, &[&longest, b"[b]: x\r\n"]);
        assert_eq!(got.len(), 2);
        assert!(decode(LogFormat::Text, &got[0].bytes).is_ok());
        assert_eq!(tail, None);
    }

    #[test]
    fn records_are_printed_as_json_lines_keeping_ts_and_peer() {
        assert_eq!(
            decode(LogFormat::Text, "[u]: one␍␊two\r\n".as_bytes()).unwrap(),
            b"{\"name\":\"u\",\"message\":\"one\\r\\ntwo\"}\n"
        );
        let jsonl = b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"127.0.0.1:5\",\"name\":\"u\",\"message\":\"m\"}\n";
        assert_eq!(decode(LogFormat::Jsonl, jsonl).unwrap(), jsonl);
    }

    #[test]
    fn what_the_original_server_could_write_is_refused_with_a_reason() {
        for (line, why) in [
            (&b"[a]b]: x]: y\r\n"[..], "canonical"),
            (b"[a]: raw \xff byte\r\n", "UTF-8"),
            (b"[]: x\r\n", "empty name"),
            (b"[a]: \r\n", "empty message"),
            (b"[a]: no line end", "CR LF"),
        ] {
            let e = decode(LogFormat::Text, line).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_preview_is_one_quoted_line_showing_every_byte() {
        assert_eq!(preview(b"[a]: x\r\n"), r#""[a]: x\r\n""#);
        assert_eq!(
            preview("[a]: \u{202E}ab\u{2028}\u{85}\t\"\\\x1b\u{7f}é".as_bytes()),
            r#""[a]: \u{202e}ab\u{2028}\u{0085}\t\"\\\u{001b}\u{007f}é""#
        );
        assert_eq!(preview(b"[a]: \xff\xc3("), r#""[a]: \xff\xc3(""#);
        let long = vec![b'x'; 500];
        let shown = preview(&long);
        assert_eq!(
            shown,
            format!("\"{}\"... (500 bytes)", "x".repeat(PREVIEW_CHARS))
        );
    }

    #[test]
    fn the_tally_gives_the_exit_status_and_the_summary() {
        let clean = Tally { good: 3, bad: 0 };
        assert_eq!(clean.exit_code(), EXIT_OK);
        let skipped = Tally { good: 1, bad: 2 };
        assert_eq!(skipped.exit_code(), EXIT_BAD_RECORD);
        assert_eq!(
            skipped.summary(),
            "1 valid record read, 2 bad records skipped"
        );
    }

    fn reader(lenient: bool) -> Reader<Vec<u8>> {
        Reader {
            name: "log".into(),
            format: None,
            scanner: None,
            check: false,
            lenient,
            tally: Tally::default(),
            out: Vec::new(),
            out_closed: false,
        }
    }

    #[test]
    fn lenient_reading_skips_bad_records_and_strict_reading_stops() {
        let log = b"[a]: one\r\n[a]b]: x]: y\r\n[b]: two\r\n[c]: torn";
        let mut lenient = reader(true);
        assert!(matches!(lenient.push(log), Ok(Flow::Go)));
        assert!(matches!(lenient.finish(), Ok(Flow::Go)));
        assert_eq!(lenient.tally, Tally { good: 2, bad: 2 });
        assert_eq!(
            lenient.out,
            b"{\"name\":\"a\",\"message\":\"one\"}\n{\"name\":\"b\",\"message\":\"two\"}\n"
        );
        let mut strict = reader(false);
        assert!(matches!(strict.push(log), Ok(Flow::Stop)));
        assert_eq!(strict.tally, Tally { good: 1, bad: 1 });
    }

    #[test]
    fn the_format_is_guessed_from_the_first_byte() {
        let mut r = reader(false);
        assert!(matches!(r.push(b""), Ok(Flow::Go)));
        assert!(r.format.is_none());
        assert!(matches!(r.push(b"{\"ts\":"), Ok(Flow::Go)));
        assert_eq!(r.format, Some(LogFormat::Jsonl));
        let mut r = reader(true);
        assert!(matches!(
            r.push(b"hello\r\n"),
            Err(ReadError::UnknownFormat { .. })
        ));
    }
}
