//! Exposition text kept compact in memory and written out again at memory-copy speed.
//!
//! A `/metrics` body repeats itself: every sample line of a result carries the instance's
//! labels, and the labels of one key come back in each of its families (frequency, estimated
//! accesses, size). [`Compact`] keeps a piece of exposition text as
//! - a dictionary, shared by the pieces made together ([`Compact::set`], e.g. the families of
//!   one result): each distinct label block once, less the prefix all of them share, and a
//!   table of up to [`MAX_HEADS`] line heads (`name{` plus that shared prefix);
//! - one short record per line: head, label block, value.
//!
//! Lines that are not `name{labels} value` (HELP and TYPE lines, samples without labels) are
//! kept as they are. The parts are cut from the text and joined with the same separators, so
//! [`Compact::write_into`] gives back exactly the text it was made from, whatever the line says.
//! About 20 bytes per sample line are kept instead of 180, and expanding costs a few small
//! copies per line, with no decompression, so a plain scrape of a large fleet is written out
//! without the exporter holding the whole text.
//!
//! # Writing out
//! [`Compact::write_into`] copies in blocks of [`WILD`] bytes, read and written past the
//! end of each part (and then overwritten by the next): every stored buffer ends in `WILD`
//! spare bytes and the output needs as many. Short parts (a label block is a few dozen bytes)
//! are then a few vector moves each instead of a call to `memcpy`.

/// Most distinct line heads (metric names) a [`Compact`] has records for; lines with further
/// names are kept as they are.
pub const MAX_HEADS: usize = 255;
use std::sync::Arc;

/// Block size of the copies of [`Compact::write_into`], and the spare bytes stored buffers end
/// in and the output needs after the last line.
pub const WILD: usize = 32;

/// Head id marking a line kept as it is.
const LITERAL: u8 = u8::MAX;

/// A piece of exposition text in compact form (see the module docs).
#[derive(Debug, Default)]
pub struct Compact {
    dict: Arc<Dictionary>,
    /// Line records: head id; then for a sample the label block id (LEB128), and the length
    /// (one byte) and bytes of the value and line feed; for a literal line its length
    /// (LEB128) and bytes. Ends in [`WILD`] spare bytes.
    records: Box<[u8]>,
    text_len: u64,
}

/// What the pieces of one [`Compact::set`] share.
#[derive(Debug, Default)]
struct Dictionary {
    /// Line heads: `name{` and the shared label prefix, concatenated; `head_ends[i]` ends
    /// head `i`. Ends in [`WILD`] spare bytes.
    heads: Box<[u8]>,
    head_ends: Box<[u32]>,
    /// Label blocks without the shared prefix, each followed by `} `, concatenated;
    /// `label_ends[i]` ends block `i`. Ends in [`WILD`] spare bytes.
    labels: Box<[u8]>,
    label_ends: Box<[u32]>,
}

impl Dictionary {
    fn bytes(&self) -> usize {
        self.heads.len() + 4 * self.head_ends.len() + self.labels.len() + 4 * self.label_ends.len()
    }

    /// Start and length of head `i` in `heads`.
    fn head(&self, i: usize) -> (usize, usize) {
        let start = i.checked_sub(1).map_or(0, |p| self.head_ends[p] as usize);
        (start, self.head_ends[i] as usize - start)
    }

    /// Start and length of label block `i` in `labels`.
    fn label(&self, i: usize) -> (usize, usize) {
        let start = i.checked_sub(1).map_or(0, |p| self.label_ends[p] as usize);
        (start, self.label_ends[i] as usize - start)
    }
}

/// `src[from..from + len]` copied to `dst[at..at + len]` in blocks of [`WILD`] bytes: up to
/// `WILD` bytes past both ends are read and written (see the module docs).
#[inline(always)]
fn wild_copy(dst: &mut [u8], at: usize, src: &[u8], from: usize, len: usize) {
    let mut i = 0;
    loop {
        dst[at + i..at + i + WILD].copy_from_slice(&src[from + i..from + i + WILD]);
        i += WILD;
        if i >= len {
            break;
        }
    }
}

/// `v` with [`WILD`] spare bytes at the end.
fn padded<T: Copy + Default>(v: &[T]) -> Box<[T]> {
    let mut out = Vec::with_capacity(v.len() + WILD);
    out.extend_from_slice(v);
    out.resize(v.len() + WILD, T::default());
    out.into()
}

/// A sample line cut into its parts: `name{labels} value\n`.
struct Sample<'a> {
    name: &'a [u8],
    labels: &'a [u8],
    value: &'a [u8],
}

/// `line` (with its line feed) cut into name, labels and value, if it has that shape. The
/// labels end at the last `} `: a value (a number) holds no `} `, a label value may. Comment
/// lines are kept as they are, whatever their text.
fn cut(line: &[u8]) -> Option<Sample<'_>> {
    if line.starts_with(b"#") {
        return None;
    }
    let body = line.strip_suffix(b"\n")?;
    let open = body.iter().position(|&b| b == b'{')?;
    let close = body.windows(2).rposition(|w| w == b"} ")?;
    // The value and its line feed have a one-byte length.
    if close < open || body.len() - close - 2 >= usize::from(u8::MAX) {
        return None;
    }
    Some(Sample {
        name: &body[..open],
        labels: &body[open + 1..close],
        value: &body[close + 2..],
    })
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split_inclusive(|&b| b == b'\n')
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    while let Some(&b) = data.get(*at) {
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    n
}

impl Compact {
    /// The compact form of `text`, with a dictionary of its own.
    pub fn new(text: &[u8]) -> Compact {
        Compact::set(&[text]).pop().unwrap_or_default()
    }

    /// The compact forms of `texts`, sharing one dictionary: texts whose lines repeat each
    /// other's label blocks (the families of one result) are held once.
    pub fn set(texts: &[&[u8]]) -> Vec<Compact> {
        // The prefix every label block shares, measured first so it is kept once.
        let mut prefix = SharedPrefix::default();
        for text in texts {
            prefix.add(text);
        }
        let mut set = SetBuilder::new(prefix.get());
        for text in texts {
            set.add(text);
        }
        set.finish()
    }

    /// Length of the text.
    pub fn text_len(&self) -> u64 {
        self.text_len
    }

    /// Bytes held for this piece: its records and its share of the dictionary.
    pub fn held_bytes(&self) -> usize {
        self.records.len() + self.dict.bytes() / Arc::strong_count(&self.dict)
    }

    /// Length of the records, without the spare bytes.
    fn records_len(&self) -> usize {
        self.records.len().saturating_sub(WILD)
    }

    /// The record at `at`: where its parts are and how long the line is.
    #[inline(always)]
    fn line(&self, at: usize) -> Line {
        let r = &self.records;
        let mut p = at;
        let head = r[p];
        p += 1;
        if head == LITERAL {
            let n = get_varint(r, &mut p) as usize;
            Line::Literal { from: p, len: n }
        } else {
            let label = get_varint(r, &mut p) as usize;
            let tail = usize::from(r[p]);
            p += 1;
            Line::Sample {
                head: self.dict.head(usize::from(head)),
                label: self.dict.label(label),
                tail: (p, tail),
            }
        }
    }

    /// Length of the line whose record is at `at` (a caller's buffer must hold it and
    /// [`WILD`] bytes more).
    pub fn line_len(&self, at: usize) -> usize {
        match self.line(at) {
            Line::Literal { len, .. } => len,
            Line::Sample { head, label, tail } => head.1 + label.1 + tail.1,
        }
    }

    /// Writes the text from record offset `*at` on into `buf` at `*pos`, line by line, while
    /// `*pos` is below `stop` and the next line fits with [`WILD`] spare bytes after it; moves
    /// `*at` and `*pos` past what was written. Returns whether the text is complete.
    pub fn write_into(&self, at: &mut usize, buf: &mut [u8], pos: &mut usize, stop: usize) -> bool {
        let end = self.records_len();
        while *at < end && *pos < stop {
            let line = self.line(*at);
            let (len, next) = match line {
                Line::Literal { from, len } => (len, from + len),
                Line::Sample { head, label, tail } => (head.1 + label.1 + tail.1, tail.0 + tail.1),
            };
            if *pos + len + WILD > buf.len() {
                break;
            }
            let mut o = *pos;
            match line {
                Line::Literal { from, len } => wild_copy(buf, o, &self.records, from, len),
                Line::Sample { head, label, tail } => {
                    wild_copy(buf, o, &self.dict.heads, head.0, head.1);
                    o += head.1;
                    wild_copy(buf, o, &self.dict.labels, label.0, label.1);
                    o += label.1;
                    wild_copy(buf, o, &self.records, tail.0, tail.1);
                }
            }
            *pos += len;
            *at = next;
        }
        *at >= end
    }

    /// The whole text.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.text_len as usize + WILD];
        let mut pos = 0;
        self.write_into(&mut 0, &mut out, &mut pos, usize::MAX);
        out.truncate(pos);
        out
    }
}

/// The label prefix every sample line of some texts shares (see [`Compact::set`]).
#[derive(Default)]
pub struct SharedPrefix {
    prefix: Option<Vec<u8>>,
}

impl SharedPrefix {
    /// Takes the sample lines of `text` into account.
    pub fn add(&mut self, text: &[u8]) {
        for s in lines(text).filter_map(cut) {
            match &mut self.prefix {
                None => self.prefix = Some(s.labels.to_vec()),
                Some(p) => {
                    let n = p.iter().zip(s.labels).take_while(|(a, b)| a == b).count();
                    p.truncate(n);
                }
            }
        }
    }

    /// The prefix (empty before any sample line).
    pub fn get(&self) -> &[u8] {
        self.prefix.as_deref().unwrap_or_default()
    }
}

/// Builds the compact forms of texts that share one dictionary, one text at a time, so that
/// no text needs to be kept until the others are rendered. `shared` must be a prefix of every
/// sample line's labels ([`SharedPrefix`] over the same texts); a line without it is kept as it
/// is.
pub struct SetBuilder {
    shared: Vec<u8>,
    heads: Vec<u8>,
    head_ends: Vec<u32>,
    labels: Vec<u8>,
    label_ends: Vec<u32>,
    /// Label block ids by a digest of the block; a digest that two blocks share is told apart
    /// by comparing the blocks, and the second is then stored again.
    label_ids: std::collections::HashMap<u64, u32>,
    records: Vec<u8>,
    done: Vec<(Box<[u8]>, u64)>,
}

impl SetBuilder {
    pub fn new(shared: &[u8]) -> SetBuilder {
        SetBuilder {
            shared: shared.to_vec(),
            heads: Vec::new(),
            head_ends: Vec::new(),
            labels: Vec::new(),
            label_ends: Vec::new(),
            label_ids: Default::default(),
            records: Vec::new(),
            done: Vec::new(),
        }
    }

    /// The head id of `name`, added if new; `None` once the table is full.
    fn head(&mut self, name: &[u8]) -> Option<u8> {
        let shared = self.shared.len();
        let mut start = 0;
        for (i, &end) in self.head_ends.iter().enumerate() {
            let head = &self.heads[start..end as usize];
            if head.len() == name.len() + 1 + shared && head.starts_with(name) {
                return Some(i as u8);
            }
            start = end as usize;
        }
        if self.head_ends.len() >= MAX_HEADS {
            return None;
        }
        self.heads.extend_from_slice(name);
        self.heads.push(b'{');
        self.heads.extend_from_slice(&self.shared);
        self.head_ends.push(self.heads.len() as u32);
        Some((self.head_ends.len() - 1) as u8)
    }

    /// The id of label block `rest` (without the shared prefix), added if new.
    fn label(&mut self, rest: &[u8]) -> u32 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let key = BuildHasherDefault::<DefaultHasher>::default().hash_one(rest);
        if let Some(&id) = self.label_ids.get(&key) {
            let i = id as usize;
            let start = i.checked_sub(1).map_or(0, |p| self.label_ends[p] as usize);
            // The stored block ends in `} `.
            if self.labels[start..self.label_ends[i] as usize - 2] == *rest {
                return id;
            }
        }
        self.labels.extend_from_slice(rest);
        self.labels.extend_from_slice(b"} ");
        self.label_ends.push(self.labels.len() as u32);
        let id = self.label_ends.len() as u32 - 1;
        self.label_ids.entry(key).or_insert(id);
        id
    }

    /// Adds the next text of the set.
    pub fn add(&mut self, text: &[u8]) {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        for line in lines(text) {
            let sample = cut(line)
                .filter(|s| s.labels.starts_with(&self.shared))
                .and_then(|s| Some((self.head(s.name)?, s)));
            match sample {
                Some((head, s)) => {
                    let id = self.label(&s.labels[self.shared.len()..]);
                    records.push(head);
                    put_varint(&mut records, u64::from(id));
                    records.push(s.value.len() as u8 + 1);
                    records.extend_from_slice(s.value);
                    records.push(b'\n');
                }
                None => {
                    records.push(LITERAL);
                    put_varint(&mut records, line.len() as u64);
                    records.extend_from_slice(line);
                }
            }
        }
        // Copied out at its exact size: what is kept for long is allocated once, not grown
        // and shrunk (which leaves holes in the heap); the scratch buffer is reused.
        self.done.push((padded(&records), text.len() as u64));
        self.records = records;
    }

    /// The compact forms of the texts added, in order.
    pub fn finish(self) -> Vec<Compact> {
        let dict = Arc::new(Dictionary {
            heads: padded(&self.heads),
            head_ends: self.head_ends.as_slice().into(),
            labels: padded(&self.labels),
            label_ends: self.label_ends.as_slice().into(),
        });
        self.done
            .into_iter()
            .map(|(records, text_len)| Compact {
                dict: dict.clone(),
                records,
                text_len,
            })
            .collect()
    }
}

/// Where the parts of one line are: `(start, length)` in the dictionary or the records.
#[derive(Clone, Copy)]
enum Line {
    Literal {
        from: usize,
        len: usize,
    },
    Sample {
        head: (usize, usize),
        label: (usize, usize),
        tail: (usize, usize),
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &[u8]) -> Compact {
        let c = Compact::new(text);
        assert_eq!(c.to_vec(), text, "{}", String::from_utf8_lossy(text));
        assert_eq!(c.text_len(), text.len() as u64);
        c
    }

    #[test]
    fn sample_lines_come_back_byte_for_byte() {
        let text = b"# HELP dcs_x Help text with {braces} and } .\n# TYPE dcs_x gauge\n\
dcs_x{instance_id=\"i1\",instance_name=\"a\",key=\"k1\"} 1\n\
dcs_x{instance_id=\"i1\",instance_name=\"a\",key=\"k2\"} 2.5e-7\n\
dcs_y{instance_id=\"i1\",instance_name=\"a\",key=\"k1\"} +Inf\n\
dcs_z 3\n";
        let c = round_trip(text);
        // Two distinct label blocks, each kept once without the shared prefix.
        assert_eq!(c.dict.label_ends.len(), 2);
        assert_eq!(&c.dict.labels[..c.dict.labels.len() - WILD], b"1\"} 2\"} ");
        assert_eq!(c.dict.head_ends.len(), 2);
    }

    #[test]
    fn odd_label_values_and_shapes_are_kept_exactly() {
        let texts: [&[u8]; 8] = [
            b"",
            b"no line feed at the end",
            b"m{k=\"a} b\"} 1\n",
            b"m{k=\"a\\\"} 2\"} 1\nm{k=\"\\n{}\"} 7\n",
            b"m{} 1\nm{} 2\n",
            b"m{k=\"x\"} \nm{k=\"x\"}  \n",
            b"m{k=\"x\"}1\n}{ 2\n{ } \n",
            "m{k=\"\u{fffd}\u{7f}\t\"} 1\r\n\n\n".as_bytes(),
        ];
        for t in texts {
            round_trip(t);
        }
        // A value too long for a record is kept as a literal line.
        for n in [253, 254, 255, 300] {
            let long = format!("m{{k=\"x\"}} {}\n", "9".repeat(n));
            round_trip(long.as_bytes());
        }
        // Lines and parts longer than a copy block, literal and not.
        let long = format!("# {}\nm{{k=\"{}\"}} 1\n", "h".repeat(1000), "k".repeat(777));
        round_trip(long.as_bytes());
    }

    #[test]
    fn a_set_shares_its_label_blocks() {
        let family = |name: &str| -> String {
            (0..100)
                .map(|i| format!("{name}{{instance_id=\"i-1\",key=\"user:{i}\"}} {i}\n"))
                .collect()
        };
        let texts = [family("a"), family("b"), family("c")];
        let texts: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        let set = Compact::set(&texts);
        assert_eq!(set.len(), 3);
        for (c, t) in set.iter().zip(&texts) {
            assert_eq!(c.to_vec(), *t);
        }
        assert_eq!(
            set[0].dict.label_ends.len(),
            100,
            "one block per key, not per line"
        );
        assert!(Arc::ptr_eq(&set[0].dict, &set[2].dict));
        let held: usize = set.iter().map(Compact::held_bytes).sum();
        let text: usize = texts.iter().map(|t| t.len()).sum();
        assert!(held * 3 < text, "{held} bytes held for {text}");
    }

    #[test]
    fn a_set_built_text_by_text_gives_the_texts_back() {
        let a = "m{instance_id=\"i-1\",analysis=\"hotkey\"} 1\nm{instance_id=\"i-1\",analysis=\"bigkey\"} 2\n";
        let b = "# HELP n x\nn{instance_id=\"i-1\",analysis=\"hotkey\",reason=\"auth\"} 0\n";
        let mut prefix = SharedPrefix::default();
        prefix.add(a.as_bytes());
        prefix.add(b.as_bytes());
        assert_eq!(prefix.get(), b"instance_id=\"i-1\",analysis=\"");
        let mut set = SetBuilder::new(prefix.get());
        set.add(a.as_bytes());
        set.add(b.as_bytes());
        // A text the prefix was not measured on: its lines without the prefix stay literal.
        let c = "m{instance_id=\"i-2\"} 3\nm{instance_id=\"i-1\",analysis=\"hotkey\"} 4\n";
        set.add(c.as_bytes());
        let set = set.finish();
        for (compact, text) in set.iter().zip([a, b, c]) {
            assert_eq!(compact.to_vec(), text.as_bytes());
        }
        // `hotkey"` once for both texts, `bigkey"` and the reason block.
        assert_eq!(set[0].dict.label_ends.len(), 3);
    }

    #[test]
    fn heads_past_the_table_are_kept_as_literal_lines() {
        let text: String = (0..600)
            .map(|i| format!("metric_{i}{{a=\"{}\"}} {i}\n", i % 7))
            .collect();
        let c = round_trip(text.as_bytes());
        assert_eq!(c.dict.head_ends.len(), MAX_HEADS);
        assert_eq!(c.dict.label_ends.len(), 7);
    }

    #[test]
    fn written_in_bounded_steps_it_is_the_same_text() {
        let text: String = (0..2000)
            .map(|i| format!("dcs_hot{{instance_id=\"i\",key=\"user:{i}\"}} {}\n", i * 37))
            .collect();
        let c = round_trip(text.as_bytes());
        assert!(c.held_bytes() < text.len() / 2, "{} held", c.held_bytes());
        let mut at = 0;
        let mut out = Vec::new();
        let mut steps = 0;
        let mut buf = [0u8; 1000 + 64 + WILD];
        loop {
            let mut pos = 0;
            let done = c.write_into(&mut at, &mut buf, &mut pos, 1000);
            // A step stops at the first line end past its limit, or before a line that does
            // not fit.
            assert!(done || (pos >= 1000 || pos + c.line_len(at) + WILD > buf.len()));
            assert!(pos <= 1000 + 64);
            out.extend_from_slice(&buf[..pos]);
            steps += 1;
            if done {
                break;
            }
        }
        assert_eq!(out, text.as_bytes());
        assert!(steps > 30);
    }
}
