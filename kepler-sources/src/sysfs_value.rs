//! Reading one decimal value from a sysfs attribute file: shared by the RAPL counters and the
//! hwmon channels, which differ only in how they name an I/O error and whether a sign is
//! understood.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use kepler_core::ReadError;

use crate::host::{read_error, Access};

/// One `pread` of `file` into `buf`, parsed with `parse`. I/O errors are classified by the
/// host layer's one rule, naming `access` (what each source needs); a value that fills
/// `buf` is too long to be a number the kernel wrote.
pub(crate) fn read_value(
    file: &File,
    what: &str,
    buf: &mut [u8],
    access: Access,
    parse: fn(&[u8]) -> Result<u64, String>,
) -> Result<u64, ReadError> {
    let n = file
        .read_at(buf, 0)
        .map_err(|e: io::Error| read_error(what, &e, access))?;
    if n == buf.len() {
        return Err(ReadError::Parse {
            what: what.to_owned(),
            detail: format!("value longer than {} bytes", buf.len() - 1),
        });
    }
    parse(&buf[..n]).map_err(|detail| ReadError::Parse {
        what: what.to_owned(),
        detail,
    })
}

/// Parses unsigned decimal digits, surrounding ASCII whitespace (the trailing newline) ignored.
/// Anything else, and values beyond `u64::MAX`, are errors naming the bad input.
pub(crate) fn parse_decimal(buf: &[u8]) -> Result<u64, String> {
    let digits = buf.trim_ascii();
    if digits.is_empty() {
        return Err("empty value".to_owned());
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(format!("not a decimal number: {}", excerpt(digits)));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| format!("value exceeds u64: {}", excerpt(digits)))?;
    }
    Ok(value)
}

/// At most 24 bytes of `bytes`, escaped, for error messages.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(24)];
    let mut s: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if cut.len() < bytes.len() {
        s.push_str("...");
    }
    format!("\"{s}\"")
}
