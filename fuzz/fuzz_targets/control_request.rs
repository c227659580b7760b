//! Fuzz the control socket's request decoding: arbitrary bytes through
//! [`lb_user::fuzzing::control_request`], which decodes them as lbd reads
//! a connection, parses the service and backend arguments, and checks
//! that a request re-encodes to itself. Seeds: `seeds/control_request`
//! (every request as `lbctl` sends it).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_user::fuzzing::control_request(data);
});
