//! Fuzzes the IPMI response parsers (issue 19): the DCMI Get Power Reading data and an SDR
//! full sensor record with a Get Sensor Reading answer. The first byte picks the parser.
//! Any bytes a BMC sends give a reading or an error, never a panic; a decoded Watts sensor
//! converts every raw byte to finite watts.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kepler_sources::ipmi::check_response(data);
});
