//! Guessing a key's type from the shape of its name, so that a big key scan asks most keys one
//! command (the size command of the guessed type) instead of two (`TYPE`, then the size
//! command the answer calls for).
//!
//! Keys of one family (`user:*:cart`, `session:<hex id>`) nearly always share a type, so a
//! key's *shape* (its name with every run of digits and hex digits that holds a digit replaced
//! by `#`) predicts its type from the keys of that shape already seen. A shape not seen yet is
//! guessed as the type seen most often. A guess is never trusted blindly: the size command of
//! the wrong type answers `WRONGTYPE`, and a size of 0 (a key that vanished, an empty string,
//! an empty stream) proves nothing either; such keys are asked `TYPE` and then the right size
//! command, as without a guess. So the result is exact whatever the guesses; only the number
//! of commands depends on them.
//!
//! Memory is bounded: at most [`MAX_SHAPES`] shapes are remembered (the table starts over when
//! full) and a shape is at most [`MAX_SHAPE_BYTES`] long.

use std::collections::HashMap;

/// Shapes remembered at most; the table is cleared when full.
pub const MAX_SHAPES: usize = 4096;
/// A shape keeps at most this many bytes of the name (the rest of the name is ignored).
pub const MAX_SHAPE_BYTES: usize = 64;

/// A key type with a size command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::String,
        Kind::List,
        Kind::Set,
        Kind::Zset,
        Kind::Hash,
        Kind::Stream,
    ];

    /// The kind of a `TYPE` answer; `None` for `none` (the key vanished) and module types.
    pub fn parse(type_name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == type_name)
    }

    /// The name `TYPE` answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::Zset => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
        }
    }

    /// The command that gives the size: bytes for strings, elements otherwise.
    pub fn size_command(self) -> &'static str {
        match self {
            Kind::String => "STRLEN",
            Kind::List => "LLEN",
            Kind::Set => "SCARD",
            Kind::Zset => "ZCARD",
            Kind::Hash => "HLEN",
            Kind::Stream => "XLEN",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The type guesses of one scan: what each shape of key name was last, and how often each
/// type was seen.
#[derive(Debug, Default)]
pub struct TypeGuess {
    by_shape: HashMap<Vec<u8>, Kind>,
    seen: [u64; 6],
    shape: Vec<u8>,
}

impl TypeGuess {
    pub fn new() -> Self {
        Self::default()
    }

    /// The guessed type of the key `name`.
    pub fn guess(&mut self, name: &[u8]) -> Kind {
        shape(name, &mut self.shape);
        if let Some(&k) = self.by_shape.get(self.shape.as_slice()) {
            return k;
        }
        self.most_seen()
    }

    /// Learns that the key `name` is of type `kind`.
    pub fn learn(&mut self, name: &[u8], kind: Kind) {
        self.seen[kind.index()] += 1;
        shape(name, &mut self.shape);
        if let Some(k) = self.by_shape.get_mut(self.shape.as_slice()) {
            *k = kind;
            return;
        }
        if self.by_shape.len() >= MAX_SHAPES {
            self.by_shape.clear();
        }
        self.by_shape.insert(self.shape.clone(), kind);
    }

    /// The type seen most often (strings before anything is seen, and on ties).
    fn most_seen(&self) -> Kind {
        let mut best = Kind::String;
        for k in Kind::ALL {
            if self.seen[k.index()] > self.seen[best.index()] {
                best = k;
            }
        }
        best
    }
}

/// Writes the shape of `name` into `out`: runs of hex digits (and `-`, as in UUIDs) that hold
/// at least one decimal digit become `#`; everything else stays; at most
/// [`MAX_SHAPE_BYTES`] bytes.
fn shape(name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < name.len() && out.len() < MAX_SHAPE_BYTES {
        let run = name[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() || **b == b'-')
            .count();
        if run > 0 && name[i..i + run].iter().any(u8::is_ascii_digit) {
            out.push(b'#');
            i += run;
        } else if run > 0 {
            let take = run.min(MAX_SHAPE_BYTES - out.len());
            out.extend_from_slice(&name[i..i + take]);
            i += run;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        shape(name, &mut out);
        out
    }

    #[test]
    fn shapes_collapse_ids_and_keep_words() {
        assert_eq!(shape_of(b"user:123:cart"), b"user:#:cart");
        assert_eq!(shape_of(b"user:98765:cart"), b"user:#:cart");
        assert_eq!(
            shape_of(b"session:3f2a9c1d-0b4e-4c2a-9d1e-7a6b5c4d3e2f"),
            b"session:#"
        );
        // Hex letters without a digit are a word ("cafe", "bad"), not an id.
        assert_eq!(shape_of(b"cafe:bad:1"), b"cafe:bad:#");
        assert_eq!(shape_of(b"odd\xff\x00name"), b"odd\xff\x00name");
        assert_eq!(shape_of(b""), b"");
        let long = vec![b'x'; 1000];
        assert_eq!(shape_of(&long).len(), MAX_SHAPE_BYTES);
        let long_hex = vec![b'a'; 1000];
        assert_eq!(shape_of(&long_hex).len(), MAX_SHAPE_BYTES);
    }

    #[test]
    fn a_shape_is_guessed_as_its_last_type_and_unknown_shapes_as_the_commonest() {
        let mut g = TypeGuess::new();
        assert_eq!(g.guess(b"anything"), Kind::String);
        g.learn(b"cart:1", Kind::Hash);
        g.learn(b"cart:2", Kind::Hash);
        g.learn(b"queue:1", Kind::List);
        assert_eq!(g.guess(b"cart:77"), Kind::Hash);
        assert_eq!(g.guess(b"queue:9"), Kind::List);
        assert_eq!(g.guess(b"never:seen"), Kind::Hash);
        g.learn(b"queue:2", Kind::Stream);
        assert_eq!(g.guess(b"queue:3"), Kind::Stream);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut g = TypeGuess::new();
        for i in 0..(3 * MAX_SHAPES) {
            // Letters only: every name its own shape.
            let name: Vec<u8> = format!("{i:x}").bytes().map(|b| b'g' + (b % 16)).collect();
            g.learn(&name, Kind::Set);
        }
        assert!(g.by_shape.len() <= MAX_SHAPES);
        assert_eq!(g.guess(b"new"), Kind::Set);
    }

    #[test]
    fn kinds_round_trip_type_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("none"), None);
        assert_eq!(Kind::parse("ReJSON-RL"), None);
    }
}
