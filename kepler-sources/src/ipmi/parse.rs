//! The two answers a BMC gives about platform power, decoded without trusting them: the DCMI
//! Get Power Reading response and an SDR full sensor record (with its reading) whose unit is
//! Watts. Both take the bytes after the completion code; both are fuzzed.

use std::fmt;

/// DCMI's group extension identifier, the first byte of every DCMI request and response.
pub const DCMI_GROUP: u8 = 0xDC;
/// NetFn of DCMI commands (group extension).
pub const DCMI_NETFN: u8 = 0x2C;
/// DCMI Get Power Reading.
pub const DCMI_GET_POWER_READING: u8 = 0x02;
/// Its request: group, mode 1 (system power statistics), two reserved bytes.
pub const DCMI_POWER_REQUEST: [u8; 4] = [DCMI_GROUP, 0x01, 0x00, 0x00];
/// "Invalid command": the completion code of a BMC without DCMI.
pub const CC_INVALID_COMMAND: u8 = 0xC1;

/// SDR base unit code of Watts (IPMI 2.0 table 43-15).
pub const UNIT_WATTS: u8 = 6;

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A DCMI power reading. Minimum and maximum are kept for debugging only: some BMCs fill
/// them with junk, so only `current` (or `average`) is ever exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcmiPower {
    /// Instantaneous power, watts.
    pub current: u16,
    /// Minimum over the sampling period, watts (unreliable).
    pub minimum: u16,
    /// Maximum over the sampling period, watts (unreliable).
    pub maximum: u16,
    /// Average over the sampling period, watts.
    pub average: u16,
    /// The BMC's timestamp of the reading (seconds, BMC clock).
    pub timestamp: u32,
    /// The averaging period, milliseconds.
    pub period_ms: u32,
    /// State bit 6: the BMC is measuring. An inactive reading is not a measurement.
    pub active: bool,
}

/// Decodes the data of a DCMI Get Power Reading response after the completion code:
/// `DC | current | min | max | average (u16 LE) | timestamp | period (u32 LE) | state`.
pub fn parse_dcmi_power(data: &[u8]) -> Result<DcmiPower, ParseError> {
    if data.len() < 18 {
        return Err(ParseError(format!(
            "DCMI power reading is {} bytes, want 18",
            data.len()
        )));
    }
    if data[0] != DCMI_GROUP {
        return Err(ParseError(format!(
            "DCMI power reading starts with {:#04x}, not the DCMI group 0xdc",
            data[0]
        )));
    }
    Ok(DcmiPower {
        current: u16_at(data, 1),
        minimum: u16_at(data, 3),
        maximum: u16_at(data, 5),
        average: u16_at(data, 7),
        timestamp: u32_at(data, 9),
        period_ms: u32_at(data, 13),
        active: data[17] & 0x40 != 0,
    })
}

/// How a sensor's raw byte is signed (SDR "analog data format", sensor units 1 bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogFormat {
    /// 0..=255.
    Unsigned,
    /// One's complement.
    OnesComplement,
    /// Two's complement.
    TwosComplement,
}

/// An SDR threshold sensor measuring Watts, with the linear conversion of its raw reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WattsSensor {
    /// Owner (slave address of the controller that answers for it).
    pub owner: u8,
    /// Owner LUN.
    pub lun: u8,
    /// Sensor number, the argument of Get Sensor Reading.
    pub number: u8,
    /// The sensor's name (ID string), e.g. "Pwr Consumption".
    pub name: String,
    /// Raw byte signedness.
    pub format: AnalogFormat,
    /// Multiplier M (10-bit signed).
    pub m: i16,
    /// Offset B (10-bit signed).
    pub b: i16,
    /// Exponent of B (4-bit signed).
    pub b_exp: i8,
    /// Result exponent R (4-bit signed).
    pub r_exp: i8,
}

fn sign_extend(v: u16, bits: u32) -> i16 {
    let shift = 16 - bits;
    ((v << shift) as i16) >> shift
}

/// Decodes an SDR record (header included) and returns it when it is a full sensor record
/// (type 0x01) of a linear, analog threshold sensor whose base unit is Watts. Anything else
/// (other record types, discrete sensors, non-linear conversions, other units) is `Ok(None)`;
/// a truncated full sensor record is an error.
pub fn parse_watts_sdr(record: &[u8]) -> Result<Option<WattsSensor>, ParseError> {
    if record.len() < 5 {
        return Err(ParseError(format!(
            "SDR record is {} bytes, shorter than its 5-byte header",
            record.len()
        )));
    }
    if record[3] != 0x01 {
        return Ok(None);
    }
    if record.len() < 48 {
        return Err(ParseError(format!(
            "full sensor record is {} bytes, want at least 48",
            record.len()
        )));
    }
    let event_type = record[13];
    let units1 = record[20];
    let base_unit = record[21];
    let linearization = record[23] & 0x7f;
    let format = match units1 >> 6 {
        0 => AnalogFormat::Unsigned,
        1 => AnalogFormat::OnesComplement,
        2 => AnalogFormat::TwosComplement,
        _ => return Ok(None), // 3: no analog reading
    };
    // Threshold sensors only (event/reading type 1), linear conversion only, a plain unit
    // (no rate, no modifier unit, not a percentage).
    if event_type != 0x01
        || base_unit != UNIT_WATTS
        || linearization != 0
        || units1 & 0x3f != 0
        || record[22] != 0
    {
        return Ok(None);
    }
    let m = sign_extend(
        u16::from(record[24]) | (u16::from(record[25] >> 6) << 8),
        10,
    );
    let b = sign_extend(
        u16::from(record[26]) | (u16::from(record[27] >> 6) << 8),
        10,
    );
    let r_exp = sign_extend(u16::from(record[29] >> 4), 4) as i8;
    let b_exp = sign_extend(u16::from(record[29] & 0x0f), 4) as i8;
    let id = record[47];
    let len = usize::from(id & 0x1f);
    let name_bytes = record.get(48..48 + len).unwrap_or(&record[48..]);
    // 8-bit ASCII+Latin-1 (type 3) is the usual case; others are shown as-is when printable.
    let name: String = name_bytes
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    Ok(Some(WattsSensor {
        owner: record[5],
        lun: record[6] & 0x03,
        number: record[7],
        name: name.trim_end().to_string(),
        format,
        m,
        b,
        b_exp,
        r_exp,
    }))
}

impl WattsSensor {
    /// Converts a raw reading byte to watts: `(M·x + B·10^Bexp)·10^R`.
    pub fn watts(&self, raw: u8) -> f64 {
        let x = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            AnalogFormat::OnesComplement => {
                if raw & 0x80 != 0 {
                    -f64::from(!raw)
                } else {
                    f64::from(raw)
                }
            }
            AnalogFormat::TwosComplement => f64::from(raw as i8),
        };
        (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(self.b_exp.into()))
            * 10f64.powi(self.r_exp.into())
    }

    /// Decodes a Get Sensor Reading response after the completion code
    /// (`raw | flags | ...`) into watts; `Ok(None)` while the reading is unavailable or the
    /// sensor is not scanning.
    pub fn reading(&self, data: &[u8]) -> Result<Option<f64>, ParseError> {
        if data.len() < 2 {
            return Err(ParseError(format!(
                "sensor reading is {} bytes, want at least 2",
                data.len()
            )));
        }
        let flags = data[1];
        // Bit 5: reading/state unavailable; bit 6 clear: scanning disabled.
        if flags & 0x20 != 0 || flags & 0x40 == 0 {
            return Ok(None);
        }
        Ok(Some(self.watts(data[0])))
    }
}

/// The fuzz target's body (and the corpus replay test's): the first byte picks the parser,
/// even for DCMI, odd for an SDR record followed by a 2-byte sensor reading. Panics only
/// when a parser breaks its own promises.
pub fn check_response(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        if let Ok(p) = parse_dcmi_power(rest) {
            assert!(rest.len() >= 18 && rest[0] == DCMI_GROUP, "{p:?}");
        }
        return;
    }
    let (record, reading) = rest.split_at(rest.len().saturating_sub(2));
    if let Ok(Some(s)) = parse_watts_sdr(record) {
        assert_eq!(record[3], 0x01);
        for raw in 0..=255u8 {
            assert!(s.watts(raw).is_finite(), "{s:?} at {raw}");
        }
        let _ = s.reading(reading);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dcmi(current: u16, average: u16, state: u8) -> Vec<u8> {
        let mut v = vec![0xDC];
        v.extend(current.to_le_bytes());
        v.extend(0xFFFFu16.to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend(average.to_le_bytes());
        v.extend(1_700_000_000u32.to_le_bytes());
        v.extend(1000u32.to_le_bytes());
        v.push(state);
        v
    }

    #[test]
    fn dcmi_reading_decodes_every_field_little_endian() {
        let p = parse_dcmi_power(&dcmi(0x1234, 517, 0x40)).unwrap();
        assert_eq!(p.current, 0x1234);
        assert_eq!(p.average, 517);
        assert_eq!((p.minimum, p.maximum), (0xFFFF, 0));
        assert_eq!(p.timestamp, 1_700_000_000);
        assert_eq!(p.period_ms, 1000);
        assert!(p.active);
        assert!(!parse_dcmi_power(&dcmi(1, 1, 0xBF)).unwrap().active);
    }

    #[test]
    fn dcmi_reading_refuses_short_or_foreign_data() {
        let full = dcmi(100, 100, 0x40);
        for n in 0..full.len() {
            assert!(parse_dcmi_power(&full[..n]).is_err(), "{n}");
        }
        let mut bad = full.clone();
        bad[0] = 0x00;
        assert!(parse_dcmi_power(&bad).unwrap_err().0.contains("0x00"));
    }

    /// A full sensor record as ipmi_sim's test BMC publishes it (M=2, B=10).
    pub(crate) fn sdr(m: u16, b: u16, rb_exp: u8, units1: u8, unit: u8) -> Vec<u8> {
        let name = b"Pwr Consumption";
        let mut r = vec![
            0, 0, 0x51, 0x01, 0, 0x20, 0, 1, 0x15, 1, 0x7f, 0x68, 0x0b, 0x01,
        ];
        r.extend([0; 6]);
        r.extend([units1, unit, 0, 0]);
        r.extend([(m & 0xff) as u8, ((m >> 8) as u8) << 6]);
        r.extend([(b & 0xff) as u8, ((b >> 8) as u8) << 6]);
        r.extend([0, rb_exp, 0, 0, 0, 0, 0xff, 0]);
        r.extend([0; 11]);
        r.push(0xC0 | name.len() as u8);
        r.extend(name);
        r[4] = (r.len() - 5) as u8;
        r
    }

    #[test]
    fn watts_sdr_decodes_name_number_and_conversion() {
        let s = parse_watts_sdr(&sdr(2, 10, 0, 0, UNIT_WATTS))
            .unwrap()
            .unwrap();
        assert_eq!(s.name, "Pwr Consumption");
        assert_eq!((s.owner, s.lun, s.number), (0x20, 0, 1));
        assert_eq!(s.watts(100), 210.0);
        assert_eq!(s.watts(255), 520.0);
        // Negative M and B (10-bit two's complement), R = -1, Bexp = 1:
        // (-3·x + -2·10)·0.1
        let s = parse_watts_sdr(&sdr(0x3FD, 0x3FE, 0xF1, 0, UNIT_WATTS))
            .unwrap()
            .unwrap();
        assert_eq!((s.m, s.b, s.r_exp, s.b_exp), (-3, -2, -1, 1));
        assert!((s.watts(10) - -5.0).abs() < 1e-9);
        // Two's complement raw byte.
        let s = parse_watts_sdr(&sdr(1, 0, 0, 0x80, UNIT_WATTS))
            .unwrap()
            .unwrap();
        assert_eq!(s.watts(0xFF), -1.0);
    }

    #[test]
    fn other_units_records_and_states_are_skipped() {
        assert_eq!(parse_watts_sdr(&sdr(2, 0, 0, 0, 1)).unwrap(), None); // degrees C
        assert_eq!(parse_watts_sdr(&sdr(2, 0, 0, 0x01 << 3, 6)).unwrap(), None); // a rate
        let mut compact = sdr(2, 0, 0, 0, 6);
        compact[3] = 0x02;
        assert_eq!(parse_watts_sdr(&compact).unwrap(), None);
        assert!(parse_watts_sdr(&sdr(2, 0, 0, 0, 6)[..40]).is_err());
        assert!(parse_watts_sdr(&[0, 0, 0x51]).is_err());
        let s = parse_watts_sdr(&sdr(2, 10, 0, 0, 6)).unwrap().unwrap();
        assert_eq!(s.reading(&[100, 0xC0, 0]).unwrap(), Some(210.0));
        assert_eq!(s.reading(&[100, 0x00, 0]).unwrap(), None); // not scanning
        assert_eq!(s.reading(&[100, 0x60, 0]).unwrap(), None); // unavailable
        assert!(s.reading(&[100]).is_err());
    }
}
