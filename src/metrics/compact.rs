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
//! [`Compact::write_to`] gives back exactly the text it was made from, whatever the line says.
//! About 20 bytes per sample line are kept instead of 180, and expanding costs a few small
//! copies per line, with no decompression: a plain scrape of a large fleet is sent about as fast
//! as a file, without the exporter holding the whole text.

/// Most distinct line heads (metric names) a [`Compact`] has records for; lines with further
/// names are kept as they are.
pub const MAX_HEADS: usize = 255;
use std::sync::Arc;

/// Head id marking a line kept as it is.
const LITERAL: u8 = u8::MAX;

/// A piece of exposition text in compact form (see the module docs).
#[derive(Debug, Default)]
pub struct Compact {
    dict: Arc<Dictionary>,
    /// Line records: head id; then for a sample the label block id (LEB128) and the value's
    /// length (one byte) and bytes; for a literal line its length (LEB128) and bytes.
    records: Box<[u8]>,
    text_len: u64,
}

/// What the pieces of one [`Compact::set`] share.
#[derive(Debug, Default)]
struct Dictionary {
    /// Line heads: `name{` and the shared label prefix, concatenated; `head_ends[i]` ends
    /// head `i`.
    heads: Box<[u8]>,
    head_ends: Box<[u32]>,
    /// Label blocks without the shared prefix, concatenated; `label_ends[i]` ends block `i`.
    labels: Box<[u8]>,
    label_ends: Box<[u32]>,
}

impl Dictionary {
    fn bytes(&self) -> usize {
        self.heads.len() + 4 * self.head_ends.len() + self.labels.len() + 4 * self.label_ends.len()
    }

    fn head(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |p| self.head_ends[p] as usize);
        &self.heads[start..self.head_ends[i] as usize]
    }

    fn label(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |p| self.label_ends[p] as usize);
        &self.labels[start..self.label_ends[i] as usize]
    }
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
    if close < open || body.len() - close - 2 > usize::from(u8::MAX) {
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
        let mut shared: Option<&[u8]> = None;
        for s in texts.iter().flat_map(|t| lines(t)).filter_map(cut) {
            shared = Some(match shared {
                None => s.labels,
                Some(p) => {
                    let n = p.iter().zip(s.labels).take_while(|(a, b)| a == b).count();
                    &p[..n]
                }
            });
        }
        let shared = shared.unwrap_or_default();

        let mut heads = Vec::new();
        let mut head_ends = Vec::new();
        let mut head_ids: Vec<&[u8]> = Vec::new();
        let mut labels = Vec::new();
        let mut label_ends = Vec::new();
        let mut label_ids: std::collections::HashMap<&[u8], u32> = Default::default();
        let mut all_records = Vec::with_capacity(texts.len());
        // One scratch buffer, copied out at its exact size: what is kept for long is allocated
        // once, not grown and shrunk (which leaves holes in the heap).
        let mut records = Vec::with_capacity(texts.iter().map(|t| t.len()).max().unwrap_or(0) / 4);
        for text in texts {
            records.clear();
            for line in lines(text) {
                let sample = cut(line).and_then(|s| {
                    let head = match head_ids.iter().position(|h| *h == s.name) {
                        Some(i) => i,
                        None if head_ids.len() < MAX_HEADS => {
                            head_ids.push(s.name);
                            heads.extend_from_slice(s.name);
                            heads.push(b'{');
                            heads.extend_from_slice(shared);
                            head_ends.push(heads.len() as u32);
                            head_ids.len() - 1
                        }
                        None => return None,
                    };
                    Some((head as u8, s))
                });
                match sample {
                    Some((head, s)) => {
                        let rest = &s.labels[shared.len()..];
                        let id = *label_ids.entry(rest).or_insert_with(|| {
                            labels.extend_from_slice(rest);
                            label_ends.push(labels.len() as u32);
                            label_ends.len() as u32 - 1
                        });
                        records.push(head);
                        put_varint(&mut records, u64::from(id));
                        records.push(s.value.len() as u8);
                        records.extend_from_slice(s.value);
                    }
                    None => {
                        records.push(LITERAL);
                        put_varint(&mut records, line.len() as u64);
                        records.extend_from_slice(line);
                    }
                }
            }
            all_records.push((Box::<[u8]>::from(records.as_slice()), text.len() as u64));
        }
        let dict = Arc::new(Dictionary {
            heads: heads.as_slice().into(),
            head_ends: head_ends.as_slice().into(),
            labels: labels.as_slice().into(),
            label_ends: label_ends.as_slice().into(),
        });
        all_records
            .into_iter()
            .map(|(records, text_len)| Compact {
                dict: dict.clone(),
                records,
                text_len,
            })
            .collect()
    }

    /// Length of the text.
    pub fn text_len(&self) -> u64 {
        self.text_len
    }

    /// Bytes held for this piece: its records and its share of the dictionary.
    pub fn held_bytes(&self) -> usize {
        self.records.len() + self.dict.bytes() / Arc::strong_count(&self.dict)
    }

    /// Appends the text from record offset `*at` on to `out`, line by line, until the text
    /// ends or `out` reaches `limit` bytes; moves `*at` past what was written. Returns whether
    /// the text is complete.
    pub fn write_to(&self, at: &mut usize, out: &mut Vec<u8>, limit: usize) -> bool {
        let r = &self.records;
        while *at < r.len() && out.len() < limit {
            let mut p = *at;
            let head = r[p];
            p += 1;
            if head == LITERAL {
                let n = get_varint(r, &mut p) as usize;
                let end = (p + n).min(r.len());
                out.extend_from_slice(&r[p..end]);
                p = end;
            } else {
                let label = get_varint(r, &mut p) as usize;
                let n = usize::from(r.get(p).copied().unwrap_or(0));
                p += 1;
                let end = (p + n).min(r.len());
                // Ids come from `new`, so they are in range.
                out.extend_from_slice(self.dict.head(usize::from(head)));
                out.extend_from_slice(self.dict.label(label));
                out.extend_from_slice(b"} ");
                out.extend_from_slice(&r[p..end]);
                out.push(b'\n');
                p = end;
            }
            *at = p;
        }
        *at >= r.len()
    }

    /// The whole text.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text_len as usize);
        self.write_to(&mut 0, &mut out, usize::MAX);
        out
    }
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
        assert_eq!(&*c.dict.labels, b"1\"2\"");
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
        let long = format!("m{{k=\"x\"}} {}\n", "9".repeat(300));
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
        assert!(held * 4 < text, "{held} bytes held for {text}");
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
        while !c.write_to(&mut at, &mut out, (steps + 1) * 1000) {
            steps += 1;
            // A step stops at the first line end past its limit.
            assert!(out.len() >= steps * 1000 && out.len() < steps * 1000 + 100);
        }
        assert_eq!(out, text.as_bytes());
        assert!(steps > 30);
    }
}
