//! The exported keys of one result, held packed in one buffer.
//!
//! A result's keys are read when the result is rendered (once, or again after a reload or a
//! rename) and by the status page (its first few); they are kept for as long as the result,
//! i.e. for every instance, all the time. As [`KeyRecord`]s they cost about 190 bytes each
//! (eight optional fields and two or three heap strings); packed, the length of the name and
//! about ten bytes.
//!
//! # Encoding
//! One entry per key, in rank order: a byte of flags saying which optional fields follow, the
//! name (LEB128 length and bytes), then the present fields in the order of [`KeyRecord`]:
//! type, shard (length and text), db, size (zigzag LEB128), unit, freq and memory (zigzag
//! LEB128), then the rates (a byte saying which of the three are present, each as the 8 bytes
//! of its `f64`). A type or unit is one byte, its number in `TYPES` or `UNITS`, or 0
//! followed by its text (length and bytes), so a value this crate does not know comes back as
//! it was.

use crate::dcs::{HotRates, KeyRecord, KeyType, SizeUnit};

const TYPE: u8 = 1;
const SHARD: u8 = 2;
const DB: u8 = 4;
const SIZE: u8 = 8;
const UNIT: u8 = 16;
const FREQ: u8 = 32;
const MEMORY: u8 = 64;
const RATES: u8 = 128;

/// Key types held as one byte (their position, from 1).
const TYPES: [&str; 5] = ["string", "list", "set", "zset", "hash"];
/// Size units held as one byte (their position, from 1).
const UNITS: [&str; 2] = ["byte", "count"];

/// Ranked keys in packed form (see the module docs).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyList {
    data: Box<[u8]>,
    len: usize,
}

impl KeyList {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys in rank order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            data: &self.data,
            at: 0,
        }
    }

    /// The first-ranked key.
    pub fn first(&self) -> Option<KeyRecord> {
        self.iter().next()
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.data.len()
    }
}

impl std::fmt::Debug for KeyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a KeyRecord> for KeyList {
    fn from_iter<I: IntoIterator<Item = &'a KeyRecord>>(keys: I) -> Self {
        let mut data = Vec::new();
        let mut len = 0;
        for k in keys {
            encode(k, &mut data);
            len += 1;
        }
        KeyList {
            data: data.into_boxed_slice(),
            len,
        }
    }
}

impl From<Vec<KeyRecord>> for KeyList {
    fn from(keys: Vec<KeyRecord>) -> Self {
        keys.iter().collect()
    }
}

/// The keys of a [`KeyList`], decoded one at a time.
pub struct Iter<'a> {
    data: &'a [u8],
    at: usize,
}

impl Iterator for Iter<'_> {
    type Item = KeyRecord;

    fn next(&mut self) -> Option<KeyRecord> {
        let data = self.data;
        let flags = *data.get(self.at)?;
        self.at += 1;
        let at = &mut self.at;
        let has = |f: u8| flags & f != 0;
        let name = text(data, at).to_owned();
        let key_type = has(TYPE).then(|| KeyType::from(named(data, at, &TYPES)));
        let shard = has(SHARD).then(|| text(data, at).to_owned());
        let db = has(DB).then(|| signed(data, at));
        let size = has(SIZE).then(|| signed(data, at));
        let unit = has(UNIT).then(|| SizeUnit::from(named(data, at, &UNITS)));
        let freq = has(FREQ).then(|| signed(data, at));
        let memory = has(MEMORY).then(|| signed(data, at));
        let rates = has(RATES).then(|| rates(data, at));
        Some(KeyRecord {
            name,
            key_type,
            shard,
            db,
            size,
            unit,
            freq,
            memory,
            rates,
        })
    }
}

fn encode(k: &KeyRecord, out: &mut Vec<u8>) {
    let flag = |present: bool, f: u8| if present { f } else { 0 };
    out.push(
        flag(k.key_type.is_some(), TYPE)
            | flag(k.shard.is_some(), SHARD)
            | flag(k.db.is_some(), DB)
            | flag(k.size.is_some(), SIZE)
            | flag(k.unit.is_some(), UNIT)
            | flag(k.freq.is_some(), FREQ)
            | flag(k.memory.is_some(), MEMORY)
            | flag(k.rates.is_some(), RATES),
    );
    put_text(out, &k.name);
    if let Some(t) = &k.key_type {
        put_named(out, t.as_str(), &TYPES);
    }
    if let Some(s) = &k.shard {
        put_text(out, s);
    }
    for v in [k.db, k.size].into_iter().flatten() {
        put_signed(out, v);
    }
    if let Some(u) = &k.unit {
        put_named(out, u.as_str(), &UNITS);
    }
    for v in [k.freq, k.memory].into_iter().flatten() {
        put_signed(out, v);
    }
    if let Some(r) = &k.rates {
        let all = [
            r.accesses_per_second,
            r.cpu_seconds_per_second,
            r.network_bytes_per_second,
        ];
        out.push(
            all.iter()
                .enumerate()
                .fold(0, |f, (i, v)| f | (u8::from(v.is_some()) << i)),
        );
        for v in all.into_iter().flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn rates(data: &[u8], at: &mut usize) -> HotRates {
    let present = data.get(*at).copied().unwrap_or(0);
    *at += 1;
    let mut next = |i: u8| {
        (present & (1 << i) != 0).then(|| {
            let mut b = [0u8; 8];
            if let Some(s) = data.get(*at..*at + 8) {
                b.copy_from_slice(s);
            }
            *at += 8;
            f64::from_le_bytes(b)
        })
    };
    HotRates {
        accesses_per_second: next(0),
        cpu_seconds_per_second: next(1),
        network_bytes_per_second: next(2),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_named(out: &mut Vec<u8>, s: &str, known: &[&str]) {
    match known.iter().position(|k| *k == s) {
        Some(i) => out.push(i as u8 + 1),
        None => {
            out.push(0);
            put_text(out, s);
        }
    }
}

fn named<'a>(data: &'a [u8], at: &mut usize, known: &[&'static str]) -> &'a str {
    let code = data.get(*at).copied().unwrap_or(0);
    *at += 1;
    match known.get(usize::from(code).wrapping_sub(1)) {
        Some(k) => k,
        None => text(data, at),
    }
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn varint(data: &[u8], at: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    while let Some(&b) = data.get(*at) {
        *at += 1;
        if shift < 64 {
            n |= u64::from(b & 0x7f) << shift;
        }
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    n
}

fn text<'a>(data: &'a [u8], at: &mut usize) -> &'a str {
    let len = varint(data, at) as usize;
    let end = at.saturating_add(len).min(data.len());
    let bytes = &data[(*at).min(end)..end];
    *at = end;
    // Only this module writes the buffer, from `&str`s, so this never fails; stay total anyway.
    std::str::from_utf8(bytes).unwrap_or_default()
}

fn signed(data: &[u8], at: &mut usize) -> i64 {
    let n = varint(data, at);
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_back_as_they_were() {
        let keys = vec![
            KeyRecord {
                name: "user:1".into(),
                key_type: Some(KeyType::Hash),
                shard: Some("192.168.0.1:6379".into()),
                db: Some(0),
                size: Some(5000),
                unit: Some(SizeUnit::Count),
                freq: Some(255),
                memory: Some(1 << 40),
                rates: Some(HotRates {
                    accesses_per_second: Some(12.5),
                    cpu_seconds_per_second: None,
                    network_bytes_per_second: Some(0.0),
                }),
            },
            // Everything missing, an empty name.
            KeyRecord::default(),
            // Values this crate does not know, extremes, text that is not ASCII.
            KeyRecord {
                name: "ключ\n\"\\".into(),
                key_type: Some(KeyType::Other("stream".into())),
                shard: Some(String::new()),
                db: Some(-1),
                size: Some(i64::MIN),
                unit: Some(SizeUnit::Other("kb".into())),
                freq: Some(i64::MAX),
                memory: None,
                rates: Some(HotRates::default()),
            },
            KeyRecord {
                name: "x".repeat(300),
                freq: Some(-7),
                ..KeyRecord::default()
            },
        ];
        let list = KeyList::from(keys.clone());
        assert_eq!(list.len(), 4);
        assert_eq!(list.iter().collect::<Vec<_>>(), keys);
        assert_eq!(list.first().as_ref(), keys.first());
        assert!(KeyList::default().is_empty() && KeyList::default().first().is_none());
    }

    #[test]
    fn packed_keys_take_about_their_names() {
        let keys: Vec<KeyRecord> = (0..100)
            .map(|i| KeyRecord {
                name: format!("user:{i}:session:profile"),
                key_type: Some(KeyType::String),
                shard: None,
                db: Some(0),
                size: Some(1_000_000 + i),
                unit: Some(SizeUnit::Byte),
                freq: Some(200),
                memory: None,
                rates: None,
            })
            .collect();
        let names: usize = keys.iter().map(|k| k.name.len()).sum();
        let list = KeyList::from(keys);
        assert!(
            list.held_bytes() <= names + 100 * 12,
            "{} bytes for {names} bytes of names",
            list.held_bytes()
        );
    }
}
