//! Fuzz the keepalived.conf reader (`lbd --config`, `lbctl convert`):
//! arbitrary bytes through [`lb_user::fuzzing::keepalived_conf`], which
//! converts and validates them (includes from memory, never from disk)
//! and checks that a converted configuration writes back as itself.
//! Seeds: `seeds/keepalived_conf` (lb-user's keepalived fixtures).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_user::fuzzing::keepalived_conf(data);
});
