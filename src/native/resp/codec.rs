//! The Redis serialization protocol (RESP2, and the RESP3 types a server or proxy may send),
//! read under limits.
//!
//! A reply is first *measured* ([`measure`]): its frame is walked without allocating anything,
//! checking every announced length against the [`Limits`] of the command that asked for it
//! before a byte of it is buffered. Only a complete frame that fits is then *decoded*
//! ([`decode`]) into a [`Value`]; so a server that announces a bulk string of a terabyte, or an
//! array of two billion elements, costs a few bytes of buffer and a "reply too large" error,
//! never an allocation of the announced size.

use std::fmt;

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    Int(i64),
    /// A status line (`+OK`), or a RESP3 big number.
    Simple(String),
    Bulk(Vec<u8>),
    /// An array, or a RESP3 set.
    Array(Vec<Value>),
    /// A RESP3 map, as its pairs in order.
    Map(Vec<(Value, Value)>),
    Double(f64),
    Bool(bool),
    /// An error reply (`-ERR …`): an answer to that one command, not a broken connection.
    Error(ServerError),
}

impl Value {
    /// The integer of an integer reply, or of a bulk string that holds one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Simple(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The text of a status line or of a UTF-8 bulk string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a bulk string or status line.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(s) => Some(s.as_bytes()),
            Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The server error, if this is one.
    pub fn as_error(&self) -> Option<&ServerError> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }

    /// What kind of reply this is, for messages ("an integer", "an array").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Int(_) => "an integer",
            Value::Simple(_) => "a status line",
            Value::Bulk(_) => "a bulk string",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
            Value::Double(_) => "a double",
            Value::Bool(_) => "a boolean",
            Value::Error(_) => "an error",
        }
    }
}

/// Bytes of an error line kept (the rest is cut): enough for every error a server documents.
pub const MAX_ERROR_BYTES: usize = 256;

/// An error reply: its code (the first word, `NOPERM`, `WRONGTYPE`, `ERR`…) and its text.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerError {
    line: String,
}

impl ServerError {
    /// From the line after `-`, cut to [`MAX_ERROR_BYTES`] and with control bytes escaped, so
    /// that it can go into a log line or a page as it is.
    pub fn new(line: &[u8]) -> Self {
        ServerError {
            line: printable(line, MAX_ERROR_BYTES),
        }
    }

    /// The error code: the first word of the line.
    pub fn code(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }

    /// The whole line (cut and escaped).
    pub fn line(&self) -> &str {
        &self.line
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl fmt::Debug for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerError({:?})", self.line)
    }
}

/// Text from a server made safe to print: invalid UTF-8 replaced, control characters (NUL,
/// CR, LF, ESC…) and backslashes escaped, and cut to at most `max` bytes (with `…` appended
/// when cut). Anything a server says goes through this before it reaches a log, an error, a
/// label or the status page.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max) + 4);
    for c in text.chars() {
        let before = out.len();
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = fmt::Write::write_fmt(&mut out, format_args!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// What one reply may hold at most. Every command asks with the limits of what it can
/// legitimately answer; a reply past them fails the connection as "reply too large".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one bulk string.
    pub bulk: usize,
    /// Values in the whole reply (every element of every nested array or map counts).
    pub elements: usize,
    /// Bytes of the whole reply frame.
    pub total: usize,
    /// Nesting of arrays and maps.
    pub depth: u8,
}

/// Bytes of a status, error or number line at most.
const MAX_LINE: usize = 64 * 1024;

impl Limits {
    /// A small reply: an integer, a status, an error, a short string.
    pub const SMALL: Limits = Limits {
        bulk: 64 * 1024,
        elements: 16,
        total: 128 * 1024,
        depth: 2,
    };

    /// A short status answer such as `TYPE`'s.
    pub const WORD: Limits = Limits {
        bulk: 64,
        elements: 1,
        total: 128,
        depth: 1,
    };

    /// A text answer such as `INFO` or `CLUSTER NODES` of up to `bytes`.
    pub const fn text(bytes: usize) -> Limits {
        Limits {
            bulk: bytes,
            elements: 1,
            total: bytes + 64,
            depth: 1,
        }
    }

    /// A list of up to `elements` strings of up to `bulk` bytes each, in `depth` levels.
    pub const fn list(elements: usize, bulk: usize, depth: u8) -> Limits {
        Limits {
            bulk,
            elements: elements + 8,
            total: elements
                .saturating_mul(bulk.saturating_add(16))
                .saturating_add(1024),
            depth,
        }
    }
}

/// Why a reply cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Past the limits of the command.
    #[error("reply too large: {0}")]
    TooLarge(String),
    /// Not RESP.
    #[error("not a Redis reply: {0}")]
    Malformed(String),
}

/// The outcome of measuring the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// A whole reply of this many bytes.
    Complete(usize),
    /// More bytes are needed: at least this many in all.
    Incomplete(usize),
}

struct Walk<'a> {
    buf: &'a [u8],
    limits: Limits,
    elements: usize,
}

enum Step {
    Done(usize),
    Need(usize),
}

impl Walk<'_> {
    /// The end of the line starting at `at` (the index of its `\r`).
    fn line(&self, at: usize) -> Result<Option<usize>, FrameError> {
        let max = MAX_LINE.min(self.limits.total);
        let window = &self.buf[at..self.buf.len().min(at + max + 2)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(i) => Ok(Some(at + i)),
            None if window.len() >= max + 2 => Err(FrameError::TooLarge(format!(
                "a line of more than {max} bytes"
            ))),
            None => Ok(None),
        }
    }

    fn count(&mut self, n: usize) -> Result<(), FrameError> {
        self.elements = self.elements.saturating_add(n);
        if self.elements > self.limits.elements {
            return Err(FrameError::TooLarge(format!(
                "more than {} values",
                self.limits.elements
            )));
        }
        Ok(())
    }

    fn length(&self, line: &[u8]) -> Result<i64, FrameError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|&n| n >= -1)
            .ok_or_else(|| FrameError::Malformed(format!("bad length {:?}", printable(line, 32))))
    }

    /// The value starting at `at`, `depth` levels deep.
    fn value(&mut self, at: usize, depth: u8) -> Result<Step, FrameError> {
        if at >= self.buf.len() {
            return Ok(Step::Need(at + 1));
        }
        if at > self.limits.total {
            return Err(FrameError::TooLarge(format!(
                "more than {} bytes in all",
                self.limits.total
            )));
        }
        let Some(end) = self.line(at + 1)? else {
            return Ok(Step::Need(self.buf.len() + 1));
        };
        let line = &self.buf[at + 1..end];
        let next = end + 2;
        match self.buf[at] {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Step::Done(next)),
            b'$' | b'=' | b'!' => {
                let n = self.length(line)?;
                if n < 0 {
                    return Ok(Step::Done(next));
                }
                let n = n as usize;
                if n > self.limits.bulk {
                    return Err(FrameError::TooLarge(format!(
                        "a string of {n} bytes (at most {})",
                        self.limits.bulk
                    )));
                }
                let end = next + n + 2;
                if end > self.limits.total.saturating_add(2) {
                    return Err(FrameError::TooLarge(format!(
                        "more than {} bytes in all",
                        self.limits.total
                    )));
                }
                if self.buf.len() < end {
                    return Ok(Step::Need(end));
                }
                if &self.buf[end - 2..end] != b"\r\n" {
                    return Err(FrameError::Malformed(
                        "a string longer than announced".into(),
                    ));
                }
                Ok(Step::Done(end))
            }
            t @ (b'*' | b'~' | b'%' | b'>' | b'|') => {
                let n = self.length(line)?;
                if n < 0 {
                    return Ok(Step::Done(next));
                }
                if depth >= self.limits.depth {
                    return Err(FrameError::TooLarge(format!(
                        "nested more than {} deep",
                        self.limits.depth
                    )));
                }
                let n = n as usize * if matches!(t, b'%' | b'|') { 2 } else { 1 };
                self.count(n)?;
                let mut at = next;
                for _ in 0..n {
                    match self.value(at, depth + 1)? {
                        Step::Done(end) => at = end,
                        need => return Ok(need),
                    }
                }
                if t == b'|' {
                    // An attribute precedes the value it describes.
                    return self.value(at, depth);
                }
                Ok(Step::Done(at))
            }
            other => Err(FrameError::Malformed(format!(
                "a reply starting with {:?}",
                printable(&[other], 8)
            ))),
        }
    }
}

/// Measures the reply at the start of `buf` under `limits`.
pub fn measure(buf: &[u8], limits: Limits) -> Result<Measure, FrameError> {
    let mut w = Walk {
        buf,
        limits,
        elements: 0,
    };
    w.count(1)?;
    match w.value(0, 0)? {
        Step::Done(n) => Ok(Measure::Complete(n)),
        Step::Need(n) => {
            if n > limits.total.saturating_add(2) {
                return Err(FrameError::TooLarge(format!(
                    "more than {} bytes in all",
                    limits.total
                )));
            }
            Ok(Measure::Incomplete(n))
        }
    }
}

/// Decodes a frame [`measure`] found complete. A frame that is not is reported as malformed,
/// never a panic.
pub fn decode(frame: &[u8]) -> Result<Value, FrameError> {
    let mut at = 0;
    let v = decode_at(frame, &mut at)?;
    if at != frame.len() {
        return Err(FrameError::Malformed("trailing bytes".into()));
    }
    Ok(v)
}

fn decode_at(buf: &[u8], at: &mut usize) -> Result<Value, FrameError> {
    let bad = || FrameError::Malformed("truncated reply".into());
    let t = *buf.get(*at).ok_or_else(bad)?;
    let rest = buf.get(*at + 1..).ok_or_else(bad)?;
    let end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
    let line = &rest[..end];
    *at += 1 + end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| FrameError::Malformed(format!("bad number {:?}", printable(line, 32))))
    };
    Ok(match t {
        b'+' => Value::Simple(text()),
        b'(' => Value::Simple(text()),
        b'-' => Value::Error(ServerError::new(line)),
        b':' => Value::Int(number()?),
        b'_' => Value::Nil,
        b'#' => Value::Bool(line == b"t"),
        b',' => Value::Double(
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| FrameError::Malformed("bad double".into()))?,
        ),
        b'$' | b'=' | b'!' => {
            let n = number()?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let n = n as usize;
            let body = buf.get(*at..*at + n).ok_or_else(bad)?.to_vec();
            *at += n + 2;
            match t {
                b'!' => Value::Error(ServerError::new(&body)),
                // Verbatim text: `txt:` or `mkd:` before the text itself.
                b'=' => Value::Bulk(body.get(4..).unwrap_or_default().to_vec()),
                _ => Value::Bulk(body),
            }
        }
        b'*' | b'~' | b'>' => {
            let n = number()?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(decode_at(buf, at)?);
            }
            Value::Array(items)
        }
        b'%' | b'|' => {
            let n = number()?;
            let mut pairs = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let k = decode_at(buf, at)?;
                let v = decode_at(buf, at)?;
                pairs.push((k, v));
            }
            if t == b'|' {
                // Attributes carry no answer: the value that follows is the reply.
                return decode_at(buf, at);
            }
            Value::Map(pairs)
        }
        _ => return Err(FrameError::Malformed("unknown reply type".into())),
    })
}

/// Appends one command in RESP (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[u8]) -> Value {
        match measure(buf, Limits::list(100, 1024, 4)).unwrap() {
            Measure::Complete(n) => decode(&buf[..n]).unwrap(),
            Measure::Incomplete(n) => panic!("incomplete, needs {n}"),
        }
    }

    #[test]
    fn every_reply_type_decodes() {
        assert_eq!(read(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(read(b":-42\r\n"), Value::Int(-42));
        assert_eq!(read(b"$3\r\nfoo\r\n"), Value::Bulk(b"foo".to_vec()));
        assert_eq!(read(b"$0\r\n\r\n"), Value::Bulk(Vec::new()));
        assert_eq!(read(b"$-1\r\n"), Value::Nil);
        assert_eq!(read(b"*-1\r\n"), Value::Nil);
        assert_eq!(read(b"_\r\n"), Value::Nil);
        assert_eq!(
            read(b"*2\r\n$1\r\n0\r\n*1\r\n$2\r\nk\xff\r\n"),
            Value::Array(vec![
                Value::Bulk(b"0".to_vec()),
                Value::Array(vec![Value::Bulk(b"k\xff".to_vec())])
            ])
        );
        assert_eq!(
            read(b"%1\r\n+key\r\n:7\r\n"),
            Value::Map(vec![(Value::Simple("key".into()), Value::Int(7))])
        );
        assert_eq!(read(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(read(b"#t\r\n"), Value::Bool(true));
        assert_eq!(read(b"=8\r\ntxt:abcd\r\n"), Value::Bulk(b"abcd".to_vec()));
        assert_eq!(
            read(b"|1\r\n+ttl\r\n:3\r\n:5\r\n"),
            Value::Int(5),
            "an attribute is skipped"
        );
        let e = read(b"-NOPERM this user has no permissions to run the 'type' command\r\n");
        assert_eq!(e.as_error().unwrap().code(), "NOPERM");
    }

    #[test]
    fn partial_replies_say_how_much_more_is_needed() {
        let full = b"*2\r\n$5\r\nhello\r\n:1\r\n";
        for cut in 0..full.len() {
            match measure(&full[..cut], Limits::SMALL).unwrap() {
                Measure::Incomplete(n) => assert!(n > cut, "{cut}: {n}"),
                Measure::Complete(n) => panic!("{cut}: complete at {n}"),
            }
        }
        assert_eq!(
            measure(full, Limits::SMALL).unwrap(),
            Measure::Complete(full.len())
        );
        // A bulk's announced length is known at once: no need to look again before it came.
        assert_eq!(
            measure(b"$10\r\nab", Limits::SMALL).unwrap(),
            Measure::Incomplete(17)
        );
    }

    #[test]
    fn announced_sizes_past_the_limits_fail_before_any_byte_of_them_is_buffered() {
        let l = Limits::list(1000, 512, 2);
        for (buf, want) in [
            (&b"$999999999999\r\n"[..], "a string of 999999999999 bytes"),
            (b"*2000000000\r\n", "more than 1008 values"),
            (b"*1\r\n*1\r\n*1\r\n:1\r\n", "nested more than 2 deep"),
            (b"*2\r\n$513\r\n", "a string of 513 bytes"),
        ] {
            let e = measure(buf, l).unwrap_err();
            assert!(
                matches!(&e, FrameError::TooLarge(m) if m.contains(want)),
                "{e}"
            );
        }
        // A line that never ends.
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(matches!(
            measure(&long, Limits::SMALL),
            Err(FrameError::TooLarge(_))
        ));
        // Many small strings adding up past the total.
        let l = Limits {
            bulk: 100,
            elements: 10_000,
            total: 1000,
            depth: 2,
        };
        let mut big = b"*100\r\n".to_vec();
        for _ in 0..100 {
            big.extend_from_slice(b"$20\r\naaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(measure(&big, l), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for buf in [
            &b"hello\r\n"[..],
            b"\x15\x03\x03\x00\x02\x02\x46\r\n",
            b"$-5\r\n",
            b"$3\r\nabcdef\r\n",
            b"*x\r\n",
        ] {
            assert!(
                matches!(measure(buf, Limits::SMALL), Err(FrameError::Malformed(_))),
                "{buf:?}"
            );
        }
        assert!(decode(b"*3\r\n:1\r\n").is_err());
        assert!(decode(b":1\r\n:2\r\n").is_err());
    }

    #[test]
    fn server_text_is_cut_and_escaped() {
        let e = ServerError::new(&[b"ERR a\r\nb\x00\x1b".as_slice(), &[b'x'; 1000]].concat());
        assert!(e.line().starts_with("ERR a\\r\\nb\\u{0}\\u{1b}xx"), "{e}");
        assert!(e.line().len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(e.line().ends_with('…'));
        assert_eq!(printable(b"back\\slash", 100), "back\\\\slash");
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"GET", b"a\r\nb"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n");
    }
}
