//! zlib as RQ writes it (`zlib.compress` of the JSON payload), with per-thread reusable state.
//!
//! Why not `ZlibEncoder::new` per call: the deflate state is ~300 KB that the allocator hands
//! back fresh (page faults and zeroing) every time, which profiling showed was most of the
//! producer's CPU per job (measured ~120 µs per call). A reused state still zeroes its tables on
//! `reset()` (~7 µs whatever the input size), so payloads under [`STORE_BELOW`] bytes, where
//! deflate saves a few dozen bytes at most, go out as one zlib *stored* block (~0.1 µs): still a
//! zlib stream that Python's `zlib.decompress` and every inflater read.
use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

thread_local! {
    static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), true));
    static DECOMPRESS: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// Below this size a payload is stored, not deflated (see the module comment).
const STORE_BELOW: usize = 512;
const _: () = assert!(STORE_BELOW <= u16::MAX as usize);

/// zlib-wraps `input` into a new buffer: stored when small, else deflated at level 1.
pub(crate) fn compress(input: &[u8]) -> Vec<u8> {
    if input.len() < STORE_BELOW {
        return stored(input);
    }
    COMPRESS.with(|cell| {
        let mut c = cell.borrow_mut();
        c.reset();
        // Incompressible input grows by a few bytes per 16 KB block plus the 6-byte wrapper.
        let mut out = Vec::with_capacity(input.len() + input.len() / 1000 + 64);
        loop {
            let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
            let rest = input.get(consumed..).unwrap_or_default();
            match c.compress_vec(rest, &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return out,
                // Out of room (only if the estimate above was short): grow and go on.
                Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
                // The in-memory deflater has no failure mode besides misuse; should one appear,
                // drop the state and take the one-shot path rather than return a cut stream.
                Err(_) => {
                    *c = Compress::new(Compression::fast(), true);
                    return one_shot(input);
                }
            }
        }
    })
}

/// RFC 1950/1951: header `78 01` (deflate, 32 KB window, fastest), one final stored block
/// (`01`, LEN, !LEN, bytes), then the Adler-32 of the data, big-endian.
fn stored(input: &[u8]) -> Vec<u8> {
    // One stored block holds at most 64 KiB; callers pass less than STORE_BELOW.
    let Ok(len) = u16::try_from(input.len()) else {
        return one_shot(input);
    };
    let mut out = Vec::with_capacity(input.len() + 11);
    out.extend_from_slice(&[0x78, 0x01, 0x01]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(input);
    out.extend_from_slice(&adler2::adler32_slice(input).to_be_bytes());
    out
}

fn one_shot(input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), Compression::fast());
    // Writing to a Vec cannot fail.
    enc.write_all(input)
        .and_then(|()| enc.finish())
        .unwrap_or_default()
}

/// The most a job's `data` or an error text may inflate to. RQ sets no limit, but a worker
/// that inflates whatever a queue holds should not let a few crafted bytes (deflate reaches
/// about 1,000:1) take all its memory; 64 MiB is far above any real job.
pub(crate) const MAX_INFLATED: usize = 64 << 20;

/// What [`decompress`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inflated {
    Data(Vec<u8>),
    /// Not a zlib stream (RQ then treats the bytes as they are).
    NotZlib,
    /// A zlib stream that inflates past [`MAX_INFLATED`].
    TooLarge,
}

impl Inflated {
    /// The inflated bytes, or `raw` itself when it is not zlib; `None` when too large.
    pub(crate) fn or_raw(self, raw: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Self::Data(v) => Some(std::borrow::Cow::Owned(v)),
            Self::NotZlib => Some(std::borrow::Cow::Borrowed(raw)),
            Self::TooLarge => None,
        }
    }
}

/// Inflates a zlib stream of at most [`MAX_INFLATED`] bytes.
pub(crate) fn decompress(input: &[u8]) -> Inflated {
    decompress_at_most(input, MAX_INFLATED)
}

fn decompress_at_most(input: &[u8], limit: usize) -> Inflated {
    DECOMPRESS.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(true);
        // Room for one byte past the limit, so that reaching it shows as too large.
        let room = limit.saturating_add(1);
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(256).min(room));
        loop {
            let Some(rest) = usize::try_from(d.total_in())
                .ok()
                .and_then(|consumed| input.get(consumed..))
            else {
                return Inflated::NotZlib;
            };
            let before = (d.total_in(), d.total_out());
            match d.decompress_vec(rest, &mut out, FlushDecompress::None) {
                Err(_) => return Inflated::NotZlib,
                Ok(_) if out.len() > limit => return Inflated::TooLarge,
                Ok(Status::StreamEnd) => return Inflated::Data(out),
                Ok(Status::Ok | Status::BufError) => {
                    // `None`, not `Finish`: miniz treats a first `Finish` call as "the output
                    // fits" and fails instead of asking for more room. No progress with room to
                    // spare: the input ended early.
                    if before == (d.total_in(), d.total_out()) && out.len() < out.capacity() {
                        return Inflated::NotZlib;
                    }
                    let grow = out.capacity().max(256).min(room - out.len());
                    out.reserve_exact(grow);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_and_matches_a_standard_inflater() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mid: Vec<u8> = (0..STORE_BELOW as u32).map(|i| (i % 7) as u8).collect();
        for input in [&b""[..], b"hello", &mid[..STORE_BELOW - 1], &mid, &big] {
            let z = compress(input);
            assert_eq!(decompress(&z), Inflated::Data(input.to_vec()));
            // The reused state must still produce a stream any zlib reader accepts.
            let mut via_reader = Vec::new();
            flate2::read::ZlibDecoder::new(z.as_slice())
                .read_to_end(&mut via_reader)
                .unwrap();
            assert_eq!(via_reader, input);
        }
    }

    #[test]
    fn small_payloads_are_one_stored_block_and_large_ones_are_deflated() {
        let z = compress(b"abc");
        assert_eq!(
            z,
            [
                0x78, 0x01, 0x01, 3, 0, 0xfc, 0xff, b'a', b'b', b'c', 0x02, 0x4d, 0x01, 0x27
            ]
        );
        assert_eq!(
            u16::from_be_bytes([z[0], z[1]]) % 31,
            0,
            "zlib header check bits"
        );
        let big = vec![b'x'; 4096];
        assert!(
            compress(&big).len() < 100,
            "repetitive input above the threshold is deflated"
        );
    }

    #[test]
    fn rejects_what_is_not_zlib_and_truncated_streams() {
        assert_eq!(decompress(b"[\"f\", null, [], {}]"), Inflated::NotZlib);
        let z = compress(b"some text that is long enough to matter, some text");
        assert_eq!(decompress(&z[..z.len() - 3]), Inflated::NotZlib);
        assert_eq!(decompress(&[]), Inflated::NotZlib);
        // A failure leaves no state behind for the next call on this thread.
        assert_eq!(
            decompress(&z),
            Inflated::Data(b"some text that is long enough to matter, some text".to_vec())
        );
    }

    #[test]
    fn stops_inflating_at_the_limit() {
        // 1 MiB of zeros deflates to a few KiB: the shape of a decompression bomb.
        let zeros = vec![0u8; 1 << 20];
        let z = compress(&zeros);
        assert!(z.len() < 8192, "{}", z.len());
        assert_eq!(decompress_at_most(&z, (1 << 20) - 1), Inflated::TooLarge);
        assert_eq!(decompress_at_most(&z, 1000), Inflated::TooLarge);
        assert_eq!(decompress_at_most(&z, 1 << 20), Inflated::Data(zeros));
        // Stored blocks too, and the state is clean for the next call.
        assert_eq!(
            decompress_at_most(&compress(b"abcd"), 3),
            Inflated::TooLarge
        );
        assert_eq!(
            decompress_at_most(&compress(b"abcd"), 4),
            Inflated::Data(b"abcd".to_vec())
        );
    }
}
