//! The text exposition compressed as it is encoded. Prometheus asks for gzip
//! on every scrape; compressing the finished text would first hold all of it
//! (about 1 KB per policy), so the encoder writes straight into the
//! compressor and only the compressed bytes (a few percent of the text, the
//! labels repeat) are ever whole in memory.

use std::{
    fmt,
    io::{self, BufWriter, Write},
};

use flate2::{Compression, write::GzEncoder};

/// How much text is gathered before the compressor sees it: the encoder
/// writes label by label, a few bytes at a time.
const GATHER: usize = 32 * 1024;

/// A `fmt::Write` that gzips what is written into memory.
pub(super) struct GzipText {
    out: BufWriter<GzEncoder<Vec<u8>>>,
    /// The compressor's error, which `fmt::Error` cannot carry.
    error: Option<io::Error>,
}

impl GzipText {
    /// Room for `expected` compressed bytes up front (the last scrape's size).
    pub(super) fn new(expected: usize) -> Self {
        // Level 1: the text is label names and values over and over, which
        // the fastest level already shrinks twenty-fold; higher levels cost
        // several times the CPU for a few percent.
        let encoder = GzEncoder::new(Vec::with_capacity(expected), Compression::fast());
        Self {
            out: BufWriter::with_capacity(GATHER, encoder),
            error: None,
        }
    }

    /// The gzip member, or the first error the compressor met.
    pub(super) fn finish(self) -> io::Result<Vec<u8>> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .finish()
    }
}

impl fmt::Write for GzipText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.write_all(s.as_bytes()).map_err(|error| {
            self.error = Some(error);
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{fmt::Write as _, io::Read};

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn what_is_written_comes_back_from_a_gzip_decoder() {
        let mut text = String::new();
        let mut gzip = GzipText::new(0);
        for i in 0..20_000 {
            let line =
                format!("keyrotor_policy_interval_days{{namespace=\"ns\",name=\"p-{i}\"}} 30\n");
            text.push_str(&line);
            gzip.write_str(&line).expect("writes");
        }
        let compressed = gzip.finish().expect("finishes");
        assert!(
            compressed.len() * 10 < text.len(),
            "{} compressed bytes for {} of text",
            compressed.len(),
            text.len()
        );
        let mut back = String::new();
        GzDecoder::new(compressed.as_slice())
            .read_to_string(&mut back)
            .expect("decodes");
        assert_eq!(back, text);
    }
}
