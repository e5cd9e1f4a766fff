//! Response bodies made of shared pieces, and the deflate fragments they are built from.
//!
//! A large `/metrics` body is assembled from pieces that are cached separately (one per metric
//! family and analysis result), so a scrape only clones reference-counted pieces: no piece is
//! copied into a contiguous buffer, and a piece kept in [`Compact`] form is written out in
//! chunks of [`CHUNK`] bytes while it is sent, so a scrape holds one chunk, not the body.
//!
//! # One gzip member from many fragments
//! Each cached piece is also kept as a [`Deflated`] fragment: a raw deflate stream of its own
//! (fresh dictionary, so it refers to nothing before it) ending in a sync flush, which leaves it
//! byte-aligned and not final. Fragments can therefore be concatenated in any order; a gzip
//! header, a final block and a trailer with the combined CRC-32 and length turn them into one
//! valid gzip member (RFC 1951 §3.2.3, RFC 1952 §2.3) that every decoder reads, the way `pigz`
//! compresses in parallel.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use hyper::body::{Frame, SizeHint};

use super::compact::{Compact, WILD};

/// Size of the chunks [`Compact`] pieces are written out in: each is one write to the socket,
/// so larger chunks mean fewer system calls and wake-ups per scrape (at 2,000 instances,
/// 256 KiB served plain scrapes about a fifth faster than 32 KiB; see BENCHMARKS.md).
pub const CHUNK: usize = 256 * 1024;
/// Chunk buffers: a chunk ends at the first line end past [`CHUNK`], so a buffer holds lines of
/// up to 4 KiB beyond it (a longer line ends the chunk early, or gets a buffer of its own).
const CHUNK_BUFFER: usize = CHUNK + 4096 + WILD;
/// Chunk buffers kept for reuse: four connections with a chunk or two in flight each.
const POOLED_CHUNKS: usize = 8;

/// Chunk buffers sent and returned, reused without being allocated or cleared again.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A buffer compact text is written into; sent as [`Bytes`] (`Bytes::from_owner`), and back
/// in the pool once sent.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn take() -> Chunk {
        let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Chunk {
            buf: pooled.unwrap_or_else(|| vec![0; CHUNK_BUFFER]),
            len: 0,
        }
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.buf.len() == CHUNK_BUFFER {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOLED_CHUNKS {
                pool.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A raw deflate fragment (see the module docs) and the CRC-32 and length of its text.
#[derive(Debug)]
pub struct Deflated {
    pub data: Bytes,
    pub crc: Crc,
}

impl Deflated {
    /// Length of the uncompressed text.
    pub fn text_len(&self) -> u64 {
        u64::from(self.crc.amount())
    }

    /// The uncompressed text.
    #[cfg(test)]
    pub fn inflate(&self) -> Bytes {
        use flate2::{Decompress, FlushDecompress};
        let want = self.crc.amount() as usize;
        let mut out = Vec::with_capacity(want);
        let mut d = Decompress::new(false);
        while (d.total_in() as usize) < self.data.len() && out.len() < want {
            let used = d.total_in() as usize;
            match d.decompress_vec(&self.data[used..], &mut out, FlushDecompress::Sync) {
                Ok(Status::Ok) | Ok(Status::StreamEnd) => {}
                // Only a fragment this module did not make could fail or stall here.
                Ok(Status::BufError) | Err(_) => break,
            }
        }
        if out.len() != want {
            tracing::error!(
                expected = want,
                got = out.len(),
                "a cached deflate fragment did not inflate to its length"
            );
        }
        Bytes::from(out)
    }
}

/// Compresses fragments one after another, reusing one compressor.
pub struct Deflater {
    c: Compress,
}

impl Deflater {
    pub fn new(level: Compression) -> Self {
        Deflater {
            c: Compress::new(level, false),
        }
    }

    /// A fragment holding `text` (see the module docs).
    pub fn fragment(&mut self, text: &[u8]) -> Deflated {
        let data = self.run(text, FlushCompress::Sync);
        let mut crc = Crc::new();
        crc.update(text);
        Deflated {
            // At its size: the output buffer was sized for text that compresses badly (a third
            // of it), and an assembly holds every new fragment until it is copied into the body.
            data: Bytes::from(data.into_boxed_slice()),
            crc,
        }
    }

    /// A final deflate stream holding `text`: the last piece of a gzip member.
    pub fn last(&mut self, text: &[u8]) -> Vec<u8> {
        self.run(text, FlushCompress::Finish)
    }

    fn run(&mut self, text: &[u8], flush: FlushCompress) -> Vec<u8> {
        self.c.reset();
        let mut out = Vec::with_capacity(text.len() / 3 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let used = self.c.total_in() as usize;
            let status = self.c.compress_vec(&text[used..], &mut out, flush);
            let all_in = self.c.total_in() as usize == text.len();
            match status {
                Ok(Status::StreamEnd) => break,
                // Done with a sync flush once everything is in and the output did not fill up.
                Ok(_) if flush != FlushCompress::Finish && all_in && out.len() < out.capacity() => {
                    break
                }
                Ok(_) => {}
                Err(e) => {
                    // Compressing into a growable Vec cannot fail; stay safe if it ever does.
                    tracing::error!(error = %e, "deflate failed");
                    break;
                }
            }
        }
        out
    }
}

/// `text` as the final part of a deflate stream that is byte-aligned where it starts (after a
/// fragment, or at the start): stored blocks (RFC 1951 §3.2.4), the last one final. Costs no
/// compression work, for small parts that change on every use.
pub fn stored_last(text: &[u8]) -> Vec<u8> {
    const MAX: usize = 65_535;
    let mut out = Vec::with_capacity(text.len() + 5 * (text.len() / MAX + 1));
    let mut chunks = text.chunks(MAX).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        // BFINAL in bit 0, BTYPE 00 (stored) in bits 1-2, then padding to the byte boundary.
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The gzip trailer for text with this combined CRC-32 and length.
pub fn gzip_trailer(crc: &Crc) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.sum().to_le_bytes());
    t[4..].copy_from_slice(&crc.amount().to_le_bytes());
    t
}

/// A copy of a CRC state (`Crc` is not `Clone`): the empty CRC combined with it.
pub fn crc_copy(crc: &Crc) -> Crc {
    let mut c = Crc::new();
    c.combine(crc);
    c
}

/// One piece of a body: bytes to send as they are, or compact text to write out while sending.
#[derive(Clone, Debug)]
pub enum Piece {
    Bytes(Bytes),
    Compact(Arc<Compact>),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Compact(c) => c.text_len(),
        }
    }
}

/// A response body: an optional head, shared pieces, then a tail, sent in that order with an
/// exact length (so HTTP/1 answers carry a `Content-Length`).
#[derive(Debug, Default)]
pub struct Body {
    head: Option<Bytes>,
    pieces: Option<Arc<[Piece]>>,
    next: usize,
    /// Where in `pieces[next]` (a [`Compact`]) writing goes on.
    at: usize,
    /// In reverse order: popped from the end.
    tail: Vec<Bytes>,
    remaining: u64,
}

impl Body {
    /// `head`, then `pieces`, then `tail`.
    pub fn new(head: Option<Bytes>, pieces: Arc<[Piece]>, tail: Vec<Bytes>) -> Body {
        let remaining = head.as_ref().map_or(0, |b| b.len() as u64)
            + pieces.iter().map(Piece::len).sum::<u64>()
            + tail.iter().map(|b| b.len() as u64).sum::<u64>();
        let mut tail = tail;
        tail.reverse();
        Body {
            head,
            pieces: Some(pieces),
            next: 0,
            at: 0,
            tail,
            remaining,
        }
    }

    /// Exact length in bytes.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let chunk = if let Some(h) = self.head.take() {
                h
            } else if let Some(pieces) = &self.pieces {
                match pieces.get(self.next) {
                    Some(Piece::Bytes(b)) => {
                        self.next += 1;
                        b.clone()
                    }
                    Some(Piece::Compact(_)) => {
                        // Consecutive compact pieces share chunks: many are a few KiB.
                        let mut chunk = Chunk::take();
                        let mut pos = 0;
                        while let Some(Piece::Compact(c)) = pieces.get(self.next) {
                            if c.write_into(&mut self.at, &mut chunk.buf, &mut pos, CHUNK) {
                                self.next += 1;
                                self.at = 0;
                            } else if pos == 0 {
                                // A line longer than a chunk buffer: a buffer of its own.
                                chunk.buf = vec![0; c.line_len(self.at) + WILD];
                            } else {
                                break;
                            }
                        }
                        chunk.len = pos;
                        Bytes::from_owner(chunk)
                    }
                    None => {
                        self.pieces = None;
                        continue;
                    }
                }
            } else {
                self.tail.pop()?
            };
            if !chunk.is_empty() {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                return Some(chunk);
            }
        }
    }

    /// The whole body in one buffer (for tests, benchmarks and small bodies).
    pub fn into_bytes(mut self) -> Bytes {
        let Some(first) = self.next_chunk() else {
            return Bytes::new();
        };
        if self.is_empty() {
            return first;
        }
        let mut out = Vec::with_capacity(first.len() + self.remaining as usize);
        out.extend_from_slice(&first);
        while let Some(c) = self.next_chunk() {
            out.extend_from_slice(&c);
        }
        Bytes::from(out)
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body {
            remaining: b.len() as u64,
            head: Some(b),
            ..Body::default()
        }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read as _;

    use super::*;

    /// `data` decompressed by a single-member gzip decoder: a body must be one gzip member.
    pub(crate) fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn text(i: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|j| b"abcdefghij\n"[(i * 7 + j * 13 + j / 5) % 11])
            .collect()
    }

    #[test]
    fn fragments_concatenate_into_one_gzip_member() {
        let mut d = Deflater::new(Compression::default());
        let texts: Vec<Vec<u8>> = (0..20).map(|i| text(i, i * 997)).collect();
        let frags: Vec<Deflated> = texts.iter().map(|t| d.fragment(t)).collect();
        let last = b"tail text\n";
        let mut body = GZIP_HEADER.to_vec();
        let mut crc = Crc::new();
        for f in &frags {
            body.extend_from_slice(&f.data);
            crc.combine(&f.crc);
        }
        body.extend_from_slice(&d.last(last));
        let mut tail_crc = Crc::new();
        tail_crc.update(last);
        crc.combine(&tail_crc);
        body.extend_from_slice(&gzip_trailer(&crc));

        let mut expected: Vec<u8> = texts.concat();
        expected.extend_from_slice(last);
        assert_eq!(gunzip(&body), expected);
        // Independently computed checksum of the whole text.
        let mut whole = Crc::new();
        whole.update(&expected);
        assert_eq!(crc.sum(), whole.sum());
        assert_eq!(crc.amount() as usize, expected.len());
        for (f, t) in frags.iter().zip(&texts) {
            assert_eq!(f.inflate(), t.as_slice());
            assert_eq!(f.text_len(), t.len() as u64);
        }
    }

    #[test]
    fn stored_blocks_end_a_member_after_fragments() {
        let mut d = Deflater::new(Compression::fast());
        for tail_len in [0usize, 1, 65_535, 65_536, 200_000] {
            let head = text(3, 5000);
            let tail = text(4, tail_len);
            let frag = d.fragment(&head);
            let mut body = GZIP_HEADER.to_vec();
            body.extend_from_slice(&frag.data);
            body.extend_from_slice(&stored_last(&tail));
            let mut crc = crc_copy(&frag.crc);
            let mut t = Crc::new();
            t.update(&tail);
            crc.combine(&t);
            body.extend_from_slice(&gzip_trailer(&crc));
            assert_eq!(
                gunzip(&body),
                [head, tail].concat(),
                "tail of {tail_len} bytes"
            );
        }
        // Alone, right after the header.
        let mut body = GZIP_HEADER.to_vec();
        body.extend_from_slice(&stored_last(b"x"));
        let mut crc = Crc::new();
        crc.update(b"x");
        body.extend_from_slice(&gzip_trailer(&crc));
        assert_eq!(gunzip(&body), b"x");
    }

    #[test]
    fn body_sends_head_pieces_and_tail_in_order_with_exact_length() {
        let compact = |t: &[u8]| Piece::Compact(Arc::new(Compact::new(t)));
        // Compact pieces larger than a chunk, and runs of small ones that share chunks.
        let big: Vec<u8> = (0..3 * CHUNK / 40)
            .flat_map(|i| format!("m{{k=\"{i:08}\"}} {}\n", i % 97).into_bytes())
            .collect();
        // A line longer than a chunk buffer, between two short ones.
        let giant = format!("m{{k=\"{}\"}} 1\nm{{k=\"x\"}} 2\n", "g".repeat(2 * CHUNK));
        let giant = [&b"m 0\n"[..], giant.as_bytes()].concat();
        let pieces: Arc<[Piece]> = vec![
            Piece::Bytes(Bytes::from_static(b"one")),
            Piece::Bytes(Bytes::new()),
            compact(b"-compact-"),
            compact(&big),
            compact(b"a{b=\"c\"} 1\n"),
            compact(b""),
            compact(&big),
            compact(&giant),
            Piece::Bytes(Bytes::from_static(b"two")),
        ]
        .into();
        let expected = [
            &b"head:one-compact-"[..],
            &big,
            b"a{b=\"c\"} 1\n",
            &big,
            &giant,
            b"two|t1|t2",
        ]
        .concat();
        let mut body = Body::new(
            Some(Bytes::from_static(b"head:")),
            pieces,
            vec![Bytes::from_static(b"|t1"), Bytes::from_static(b"|t2")],
        );
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(expected.len() as u64)
        );
        let mut sent = Vec::new();
        while let Some(chunk) = body.next_chunk() {
            // A chunk of compact text stops at the first line end past CHUNK (or holds one
            // longer line).
            assert!(chunk.len() < CHUNK + 100 || chunk.len() < 2 * CHUNK + 100);
            assert!(!chunk.is_empty());
            sent.extend_from_slice(&chunk);
            assert_eq!(body.len(), (expected.len() - sent.len()) as u64);
        }
        assert_eq!(sent, expected);
        assert_eq!(Body::from("x").into_bytes(), &b"x"[..]);
        assert!(Body::default().into_bytes().is_empty());
    }
}
