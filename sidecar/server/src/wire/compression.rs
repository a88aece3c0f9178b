//! OP_COMPRESSED: the compressors MongoDB drivers negotiate in `hello`
//! (`compression: ["snappy", "zlib", "zstd"]`), and wrapping/unwrapping.

use std::io::{Read, Write};

use super::{MAX_MESSAGE_SIZE, WireError};

/// A compressor named in the wire protocol, with its one-byte id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Noop,
    Snappy,
    Zlib,
    Zstd,
}

impl Compressor {
    /// The compressors this server offers, in its order of preference when a
    /// client lists several.
    pub const SUPPORTED: [Compressor; 3] = [Compressor::Snappy, Compressor::Zstd, Compressor::Zlib];

    pub fn from_id(id: u8) -> Result<Self, WireError> {
        match id {
            0 => Ok(Self::Noop),
            1 => Ok(Self::Snappy),
            2 => Ok(Self::Zlib),
            3 => Ok(Self::Zstd),
            other => Err(WireError::UnknownCompressor(other)),
        }
    }

    pub fn id(self) -> u8 {
        match self {
            Self::Noop => 0,
            Self::Snappy => 1,
            Self::Zlib => 2,
            Self::Zstd => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Snappy => "snappy",
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "snappy" => Some(Self::Snappy),
            "zlib" => Some(Self::Zlib),
            "zstd" => Some(Self::Zstd),
            "noop" => Some(Self::Noop),
            _ => None,
        }
    }

    /// Decompresses `data`, refusing to produce more than `declared` bytes
    /// (the size the header announced, itself at most the message limit).
    pub fn decompress(self, data: &[u8], declared: usize) -> Result<Vec<u8>, WireError> {
        debug_assert!(declared <= MAX_MESSAGE_SIZE);
        let err = |reason: String| WireError::Decompress {
            compressor: self.name(),
            reason,
        };
        let out = match self {
            Self::Noop => data.to_vec(),
            Self::Snappy => {
                let len = snap::raw::decompress_len(data).map_err(|e| err(e.to_string()))?;
                if len != declared {
                    return Err(WireError::UncompressedSizeMismatch {
                        declared,
                        actual: len,
                    });
                }
                snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| err(e.to_string()))?
            }
            Self::Zlib => {
                read_bounded(flate2::read::ZlibDecoder::new(data), declared).map_err(err)?
            }
            Self::Zstd => {
                let decoder =
                    zstd::stream::read::Decoder::new(data).map_err(|e| err(e.to_string()))?;
                read_bounded(decoder, declared).map_err(err)?
            }
        };
        if out.len() != declared {
            return Err(WireError::UncompressedSizeMismatch {
                declared,
                actual: out.len(),
            });
        }
        Ok(out)
    }

    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Noop => Ok(data.to_vec()),
            Self::Snappy => snap::raw::Encoder::new()
                .compress_vec(data)
                .map_err(std::io::Error::other),
            Self::Zlib => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()
            }
            Self::Zstd => zstd::bulk::compress(data, 1),
        }
    }
}

/// Reads at most `limit + 1` bytes so a decompression bomb stops at the limit.
fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_compressor_round_trips() {
        let data = b"hello hello hello hello world".repeat(20);
        for c in [
            Compressor::Noop,
            Compressor::Snappy,
            Compressor::Zlib,
            Compressor::Zstd,
        ] {
            let z = c.compress(&data).unwrap();
            assert_eq!(c.decompress(&z, data.len()).unwrap(), data, "{c:?}");
            assert_eq!(Compressor::from_id(c.id()).unwrap(), c);
        }
    }

    #[test]
    fn lies_about_size_and_garbage_are_errors() {
        let data = vec![7u8; 1000];
        for c in [Compressor::Snappy, Compressor::Zlib, Compressor::Zstd] {
            let z = c.compress(&data).unwrap();
            assert!(c.decompress(&z, 10).is_err(), "{c:?} size lie");
            assert!(c.decompress(&[1, 2, 3, 4, 5], 10).is_err(), "{c:?} garbage");
        }
        assert_eq!(Compressor::from_id(9), Err(WireError::UnknownCompressor(9)));
    }
}
