//! One line of `MONITOR` output: `1339518083.107412 [0 127.0.0.1:60866] "get" "k\x00"`.
//!
//! The server writes the time, then in brackets the database the command ran in and the
//! client (`ip:port`, `unix:/path`, or `lua` for a command a script ran), then every argument
//! in double quotes, escaped as C strings (`\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b`, and `\xHH`
//! for any other byte that is not printable ASCII). Anything else is not a line this reads.

/// A parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorLine<'a> {
    pub db: i64,
    /// The client as the server shows it (`127.0.0.1:60866`, `lua`).
    pub client: &'a [u8],
    /// The command name and its arguments, unescaped.
    pub args: Vec<Vec<u8>>,
}

impl MonitorLine<'_> {
    /// Whether a script ran the command (its keys are counted with the script's own call).
    pub fn from_script(&self) -> bool {
        self.client == b"lua"
    }
}

/// Parses one line (without `+` and CRLF); `None` for anything that is not a command line.
pub fn parse(line: &[u8]) -> Option<MonitorLine<'_>> {
    let open = line.iter().position(|&b| b == b'[')?;
    let close = open + line[open..].iter().position(|&b| b == b']')?;
    let inside = &line[open + 1..close];
    let space = inside.iter().position(|&b| b == b' ')?;
    let db = std::str::from_utf8(&inside[..space]).ok()?.parse().ok()?;
    let client = &inside[space + 1..];
    let mut args = Vec::new();
    let mut rest = &line[close + 1..];
    loop {
        rest = trim_start(rest);
        if rest.is_empty() {
            break;
        }
        let (arg, after) = quoted(rest)?;
        args.push(arg);
        rest = after;
    }
    if args.is_empty() {
        return None;
    }
    Some(MonitorLine { db, client, args })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

/// One `"..."` argument at the start of `s`, unescaped, and what follows it.
fn quoted(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                out.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'x' => {
                        let hex = std::str::from_utf8(s.get(i..i + 2)?).ok()?;
                        i += 2;
                        u8::from_str_radix(hex, 16).ok()?
                    }
                    other => other,
                });
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_its_database_client_and_unescaped_arguments() {
        let l = parse(br#"1339518083.107412 [3 127.0.0.1:60866] "SET" "k\x00\xff\"q\"\\" "a b""#)
            .unwrap();
        assert_eq!(l.db, 3);
        assert_eq!(l.client, b"127.0.0.1:60866");
        assert_eq!(
            l.args,
            vec![
                b"SET".to_vec(),
                b"k\x00\xff\"q\"\\".to_vec(),
                b"a b".to_vec()
            ]
        );
        assert!(!l.from_script());
        let lua = parse(br#"1.0 [0 lua] "get" "x""#).unwrap();
        assert!(lua.from_script());
        let unix = parse(br#"1.0 [12 unix:/tmp/redis.sock] "ping""#).unwrap();
        assert_eq!((unix.db, unix.client), (12, &b"unix:/tmp/redis.sock"[..]));
        assert_eq!(
            parse(br#"1.0 [0 1.2.3.4:5] "x" "\n\r\t\a\b""#)
                .unwrap()
                .args[1],
            b"\n\r\t\x07\x08".to_vec()
        );
    }

    #[test]
    fn what_is_not_a_command_line_is_refused() {
        for bad in [
            &b"OK"[..],
            b"1.0 [x 1.2.3.4:5] \"get\"",
            b"1.0 [0 1.2.3.4:5]",
            b"1.0 [0 1.2.3.4:5] \"unterminated",
            b"1.0 [0 1.2.3.4:5] unquoted",
            b"1.0 [0 1.2.3.4:5] \"bad \\x4\"",
        ] {
            assert!(parse(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
