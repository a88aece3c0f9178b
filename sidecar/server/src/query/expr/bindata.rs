//! BinData to and from strings: the formats of `$convert`'s `format`
//! (`base64`, `base64url`, `hex`, `utf8`, `uuid`, `auto`), coded as mongod
//! 8.0 codes them (`util/base64.cpp`, `util/hex.cpp`, `util/uuid.cpp`), so
//! the strings it accepts, the strings it makes and the reasons it gives
//! for a bad one are mongod's.
//!
//! mongod's decoders are lenient where a strict RFC 4648 decoder is not:
//! the unused bits of a last base64 group are ignored, and base64url takes
//! its `=` padding or leaves it out. Kept so, since a string mongod turns
//! into BinData must turn into the same BinData here.

use bson::Binary;
use bson::spec::BinarySubtype;

/// A `format` of `$convert`, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// BinData to string only: a UUID's canonical form, base64 otherwise.
    Auto,
    Base64,
    Base64Url,
    /// Uppercase when made, either case when read.
    Hex,
    Utf8,
    /// Subtype 4, 16 bytes: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid,
}

const FORMATS: &[(&str, Format)] = &[
    ("auto", Format::Auto),
    ("base64", Format::Base64),
    ("base64url", Format::Base64Url),
    ("hex", Format::Hex),
    ("utf8", Format::Utf8),
    ("uuid", Format::Uuid),
];

impl Format {
    pub(super) fn from_name(name: &str) -> Option<Format> {
        FORMATS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn name(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The length of the string `encode` makes of `b` in `format`, known
/// before it is built so a caller can refuse one too large to hold.
pub(super) fn encoded_len(b: &Binary, format: Format) -> usize {
    let n = b.bytes.len();
    match format {
        Format::Auto if is_uuid(b) => 36,
        Format::Auto | Format::Base64 => n.div_ceil(3).saturating_mul(4),
        Format::Base64Url => (n / 3).saturating_mul(4) + [0, 2, 3][n % 3],
        Format::Hex => n.saturating_mul(2),
        Format::Utf8 => n,
        Format::Uuid => 36,
    }
}

/// `b` as a string in `format`; the reason mongod gives when it cannot be.
pub(super) fn encode(b: &Binary, format: Format) -> Result<String, String> {
    Ok(match format {
        Format::Auto if is_uuid(b) => uuid_string(&b.bytes),
        Format::Auto | Format::Base64 => base64_encode(&b.bytes, STANDARD, true),
        Format::Base64Url => base64_encode(&b.bytes, URL, false),
        Format::Hex => hex_upper(&b.bytes),
        Format::Utf8 => String::from_utf8(b.bytes.clone())
            .map_err(|_| "BinData does not represent a valid UTF-8 string".to_owned())?,
        Format::Uuid if is_uuid(b) => uuid_string(&b.bytes),
        Format::Uuid => return Err("BinData does not represent a valid UUID".into()),
    })
}

/// The bytes `s` spells in `format`; the reason mongod gives when it
/// spells none. `auto` only shows BinData: it reads nothing.
pub(super) fn decode(s: &str, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Base64 => base64_decode(s.as_bytes(), STANDARD, true).map_err(str::to_owned),
        Format::Base64Url => base64_decode(s.as_bytes(), URL, false).map_err(str::to_owned),
        Format::Hex => hex_decode(s.as_bytes()),
        // A BSON string is valid UTF-8 already (the decoder checked it).
        Format::Utf8 => Ok(s.as_bytes().to_vec()),
        Format::Uuid => parse_uuid(s).ok_or_else(|| format!("Invalid UUID string: {s}")),
        Format::Auto => Err(format!("Invalid format '{}'", format.name())),
    }
}

fn is_uuid(b: &Binary) -> bool {
    b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16
}

/// BinData as mongod shows it in a message: `BinData(0, 68656C6C6F)`.
pub(super) fn shown(b: &Binary) -> String {
    format!("BinData({}, {})", u8::from(b.subtype), hex_upper(&b.bytes))
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
        out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
    }
    out
}

fn hex_digit(c: u8) -> Result<u8, String> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!(
            "The character \\x{c:02x} failed to parse from hex."
        )),
    }
}

fn hex_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("Hex blob with odd digit count".into());
    }
    s.chunks_exact(2)
        .map(|pair| Ok((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?))
        .collect()
}

fn base64_encode(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let sextet = |x: u32| char::from(alphabet[(x & 0x3f) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let accum = group
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (u32::from(*b) << (16 - 8 * i)));
        // A group of n bytes makes n + 1 characters.
        for i in 0..=group.len() {
            out.push(sextet(accum >> (18 - 6 * i)));
        }
        if pad {
            for _ in group.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// mongod's decoder: groups of four characters, the last one shortened by
/// `=` (or, without `required_padding`, by leaving characters out).
fn base64_decode(
    s: &[u8],
    alphabet: &[u8; 64],
    required_padding: bool,
) -> Result<Vec<u8>, &'static str> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let last = match s.len() % 4 {
        0 => 4,
        n => n,
    };
    if last < if required_padding { 4 } else { 2 } {
        return Err("invalid base64");
    }
    let sextet = |c: u8| -> Result<u32, &'static str> {
        alphabet
            .iter()
            .position(|a| *a == c)
            .map(|p| p as u32)
            .ok_or("Invalid base64 character")
    };
    let (body, tail) = s.split_at(s.len() - last);
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    for group in body.chunks_exact(4) {
        let mut accum = 0u32;
        for c in group {
            accum = (accum << 6) | sextet(*c)?;
        }
        out.extend_from_slice(&accum.to_be_bytes()[1..]);
    }
    let mut bits = 24;
    if last < 4 || tail.get(3) == Some(&b'=') {
        bits -= 8;
        if last < 3 || tail.get(2) == Some(&b'=') {
            bits -= 8;
        }
    }
    // The characters that carry the kept bits: 2, 3 or 4 of them.
    let used = bits / 6 + usize::from(bits % 6 != 0);
    let mut accum = 0u32;
    for (i, c) in tail.iter().take(used).enumerate() {
        accum |= sextet(*c)? << (18 - 6 * i);
    }
    out.extend_from_slice(&accum.to_be_bytes()[1..1 + bits / 8]);
    Ok(out)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits of either case.
fn parse_uuid(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some((hex_digit(pair[0]).ok()? << 4) | hex_digit(pair[1]).ok()?))
        .collect()
}

fn uuid_string(bytes: &[u8]) -> String {
    let h: String = hex_upper(bytes).to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(bytes: &[u8]) -> Binary {
        Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn base64_as_mongod_codes_it() {
        for (bytes, standard, url) in [
            (&b""[..], "", ""),
            (b"a", "YQ==", "YQ"),
            (b"ab", "YWI=", "YWI"),
            (b"abc", "YWJj", "YWJj"),
            (b"\xfb\xff\xbf", "+/+/", "-_-_"),
            (b"hello", "aGVsbG8=", "aGVsbG8"),
        ] {
            let b = bin(bytes);
            assert_eq!(encode(&b, Format::Base64).unwrap(), standard);
            assert_eq!(encode(&b, Format::Auto).unwrap(), standard);
            assert_eq!(encode(&b, Format::Base64Url).unwrap(), url);
            assert_eq!(encoded_len(&b, Format::Base64), standard.len());
            assert_eq!(encoded_len(&b, Format::Base64Url), url.len());
            assert_eq!(decode(standard, Format::Base64).unwrap(), bytes);
            assert_eq!(decode(url, Format::Base64Url).unwrap(), bytes);
            // base64url takes its padding too.
            assert_eq!(
                decode(
                    &standard.replace('+', "-").replace('/', "_"),
                    Format::Base64Url
                )
                .unwrap(),
                bytes
            );
        }
        // The unused bits of the last group are ignored, as mongod's.
        assert_eq!(decode("YR==", Format::Base64).unwrap(), b"a");
        let bad = |s: &str, f| decode(s, f).unwrap_err();
        assert_eq!(bad("YQ", Format::Base64), "invalid base64");
        assert_eq!(bad("YWJjY", Format::Base64), "invalid base64");
        assert_eq!(bad("Y", Format::Base64Url), "invalid base64");
        assert_eq!(bad("YW*j", Format::Base64), "Invalid base64 character");
        assert_eq!(bad("-_-_", Format::Base64), "Invalid base64 character");
        assert_eq!(bad("+/+/", Format::Base64Url), "Invalid base64 character");
        // Padding only ends the string.
        assert_eq!(bad("YQ==YWJj", Format::Base64), "Invalid base64 character");
        assert_eq!(bad("YW=j", Format::Base64), "Invalid base64 character");
        assert_eq!(bad("====", Format::Base64), "Invalid base64 character");
        assert_eq!(bad("é==", Format::Base64), "Invalid base64 character");
    }

    #[test]
    fn hex_utf8_and_uuid() {
        let b = bin(b"\x00\xab\xff");
        assert_eq!(encode(&b, Format::Hex).unwrap(), "00ABFF");
        assert_eq!(encoded_len(&b, Format::Hex), 6);
        assert_eq!(decode("00abFF", Format::Hex).unwrap(), b"\x00\xab\xff");
        assert_eq!(decode("", Format::Hex).unwrap(), b"");
        assert_eq!(
            decode("abc", Format::Hex).unwrap_err(),
            "Hex blob with odd digit count"
        );
        assert_eq!(
            decode("0g", Format::Hex).unwrap_err(),
            "The character \\x67 failed to parse from hex."
        );
        assert_eq!(
            decode("é", Format::Hex).unwrap_err(),
            "The character \\xc3 failed to parse from hex."
        );
        assert_eq!(decode("héllo", Format::Utf8).unwrap(), "héllo".as_bytes());
        assert_eq!(encode(&bin("é".as_bytes()), Format::Utf8).unwrap(), "é");
        assert_eq!(
            encode(&bin(b"\xe2\x82"), Format::Utf8).unwrap_err(),
            "BinData does not represent a valid UTF-8 string"
        );
        let text = "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a60";
        let bytes = decode(&text.to_uppercase(), Format::Uuid).unwrap();
        assert_eq!(bytes.len(), 16);
        let uuid = Binary {
            subtype: BinarySubtype::Uuid,
            bytes,
        };
        assert_eq!(encode(&uuid, Format::Uuid).unwrap(), text);
        assert_eq!(encode(&uuid, Format::Auto).unwrap(), text);
        assert_eq!(encoded_len(&uuid, Format::Auto), 36);
        // Not subtype 4, or not 16 bytes: no UUID.
        let generic = bin(&uuid.bytes);
        assert_eq!(
            encode(&generic, Format::Uuid).unwrap_err(),
            "BinData does not represent a valid UUID"
        );
        assert_eq!(
            encode(&generic, Format::Auto).unwrap(),
            "DjuQY4q9TrOfn/TFn9MKYA=="
        );
        let short = Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![1, 2],
        };
        assert_eq!(encode(&short, Format::Auto).unwrap(), "AQI=");
        for bad in [
            "0e3b90638abd4eb39f9ff4c59fd30a60",
            "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a6",
            "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a600",
            "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a6g",
            "0e3b9063-8abd-4eb3-9f9ff-4c59fd30a60",
            "0e3b9063-8abd-4eb3-9f9f-f4c59fd30aé",
        ] {
            assert_eq!(
                decode(bad, Format::Uuid).unwrap_err(),
                format!("Invalid UUID string: {bad}")
            );
        }
        assert_eq!(
            decode("YQ==", Format::Auto).unwrap_err(),
            "Invalid format 'auto'"
        );
        assert_eq!(shown(&bin(b"hello")), "BinData(0, 68656C6C6F)");
    }
}
