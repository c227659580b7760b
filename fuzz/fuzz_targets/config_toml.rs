//! Fuzz lb's TOML configuration reader (`lbd --config`): arbitrary bytes
//! through [`lb_user::fuzzing::config_toml`], which parses and validates
//! them and checks that a configuration that loads writes back as itself.
//! Seeds: `seeds/config_toml` (the examples and the config tests' files).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_user::fuzzing::config_toml(data);
});
