//! XEP-0138 stream compression with zlib (RFC 1950). Off by default: the XEP is Obsolete because
//! compressing secrets next to attacker-chosen data leaks them (CRIME-style), and an inflater is
//! a way to turn a few bytes into many; inflated input is therefore bounded per read.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Output space added per step.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZlibError {
    #[error("compressed input inflates beyond {0} bytes")]
    TooLarge(usize),
    #[error("corrupt compressed input")]
    Corrupt,
}

pub struct Zlib {
    inflate: Decompress,
    deflate: Compress,
}

impl Zlib {
    pub fn new() -> Self {
        Zlib {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
        }
    }

    /// Inflates what one socket read delivered, appending to `out`; refuses to produce more than
    /// `limit` bytes from it.
    pub fn inflate(
        &mut self,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ZlibError> {
        let start = out.len();
        let mut consumed = 0;
        loop {
            if out.len() - start > limit {
                return Err(ZlibError::TooLarge(limit));
            }
            out.reserve_exact(CHUNK);
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| ZlibError::Corrupt)?;
            consumed += (self.inflate.total_in() - before) as usize;
            if status == Status::StreamEnd {
                // A client never ends the zlib stream while the XML stream is open.
                return Err(ZlibError::Corrupt);
            }
            // Spare output space left over means the inflater wants more input.
            if out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    /// Compresses one batch of output with a sync flush, so the peer can decode it at once.
    pub fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut consumed = 0;
        loop {
            out.reserve(input.len() - consumed + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .expect("deflate into a growing buffer cannot fail");
            consumed += (self.deflate.total_in() - before) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_batches_decodes_each_batch_at_once() {
        let mut sender = Zlib::new();
        let mut receiver = Zlib::new();
        let batches: [&[u8]; 3] = [
            b"<message xmlns='jabber:client'><body>hi</body></message>",
            b" ",
            &[b'x'; 100_000],
        ];
        for batch in batches {
            let mut wire = Vec::new();
            sender.deflate(batch, &mut wire);
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]), "sync flush marker");
            let mut plain = Vec::new();
            receiver.inflate(&wire, 1 << 20, &mut plain).unwrap();
            assert_eq!(plain, batch);
        }
    }

    #[test]
    fn split_input_inflates_across_reads() {
        let mut sender = Zlib::new();
        let mut receiver = Zlib::new();
        let text = b"<presence xmlns='jabber:client'><show>away</show></presence>".repeat(20);
        let mut wire = Vec::new();
        sender.deflate(&text, &mut wire);
        let mut plain = Vec::new();
        for chunk in wire.chunks(7) {
            receiver.inflate(chunk, 1 << 20, &mut plain).unwrap();
        }
        assert_eq!(plain, text);
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let mut sender = Zlib::new();
        let mut wire = Vec::new();
        sender.deflate(&vec![b' '; 10_000_000], &mut wire);
        assert!(wire.len() < 20_000, "highly compressible: {}", wire.len());
        let mut plain = Vec::new();
        let result = Zlib::new().inflate(&wire, 256 * 1024, &mut plain);
        assert_eq!(result, Err(ZlibError::TooLarge(256 * 1024)));
        assert!(
            plain.len() < 256 * 1024 + 2 * CHUNK,
            "stopped near the limit"
        );

        let mut plain = Vec::new();
        let result = Zlib::new().inflate(b"definitely not zlib", 1 << 20, &mut plain);
        assert_eq!(result, Err(ZlibError::Corrupt));
    }
}
