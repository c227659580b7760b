//! Fuzz the VRRP advertisement codec: arbitrary bytes through
//! [`lb_user::fuzzing::vrrp_parse`] (`lb_user::vrrp::wire::fuzz_parse`),
//! which must never panic. Byte 0 picks the family (bit 0: IPv6); the rest
//! is the VRRP message. Besides parsing as received, `fuzz_parse`
//! re-parses with the checksum fixed up and checks that every accepted
//! message emits and re-parses to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_user::fuzzing::vrrp_parse(data);
});
