//! The bodies of the cargo-fuzz targets in `fuzz/`: each target there is
//! one call to a function here, so the fuzzer (nightly) and the stable
//! regression test below run exactly the same code.
//!
//! Every function takes arbitrary bytes and must not panic on any of
//! them: a parser's errors are answers, a panic is a bug. Where the code
//! promises more, the function checks it too, and a broken promise
//! panics so that the fuzzer reports it: a configuration that loads
//! writes back (`lbctl convert`, [`Config::to_toml`]) as TOML that loads
//! as the same configuration; a request that decodes re-encodes (as
//! `lbctl` sends it) to itself.
//!
//! The test below (a unit test, so that `cargo xtask test`, which runs
//! `--lib --bins`, runs it) feeds each target its seeds
//! (`fuzz/seeds/<target>/`, crashes found by the fuzzer included) and a
//! fixed set of mutations of them: a bounded fuzz on stable Rust.
//! `cargo test -p lb-user --lib fuzzing -- --ignored write_seeds`
//! regenerates the seeds from the project's fixtures.
//!
//! Compiled for tests and with the `fuzzing` feature (which `fuzz/`
//! enables) only: lbd and lbctl carry none of it.

use std::path::{Path, PathBuf};

use crate::api::control::{self, Limits, Request};
use crate::config::Config;
use crate::config::keepalived::{self, Includes};

/// A fuzz target's body: arbitrary bytes in, a panic when it finds a bug.
pub type Target = fn(&[u8]);

/// Every fuzz target by name (its directory in `fuzz/seeds/` and its
/// binary in `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config_toml", config_toml),
    ("keepalived_conf", keepalived_conf),
    ("control_request", control_request),
    ("vrrp_parse", vrrp_parse),
];

/// lb's TOML configuration (`lbd --config`, [`Config::parse`]): parsed and
/// validated; one that loads must write as TOML that loads as itself.
///
/// The bytes are read as UTF-8 with invalid sequences replaced (a file
/// that is not UTF-8 is refused before parsing), so that every input
/// reaches the parser.
///
/// # Panics
/// When a loaded configuration does not write, or its TOML does not load
/// back as the same configuration.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("lb.toml");
    match Config::parse(&text, path) {
        Ok(config) => assert_rewrites(&config),
        Err(e) => drop(e.to_string()),
    }
}

/// keepalived.conf (`lbd --config`, `lbctl convert`,
/// [`keepalived::parse`]), its `include`s read from the fixtures' `parts/`
/// held in memory (never from disk); a configuration it converts to must
/// write as TOML that loads as itself, which is what `lbctl convert`
/// prints.
///
/// # Panics
/// When a converted configuration does not write, or its TOML does not
/// load back as the same configuration.
pub fn keepalived_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = keepalived::looks_like_keepalived(&text);
    match keepalived::parse_with(&text, Path::new("keepalived.conf"), include_parts()) {
        Ok((config, warnings)) => {
            for w in warnings {
                drop(w.to_string());
            }
            assert_rewrites(&config);
        }
        Err(e) => drop(e.to_string()),
    }
}

/// The files the fixture `includes.conf` includes, where an `include` in
/// `keepalived.conf` finds them (`parts/...`).
fn include_parts() -> Includes {
    const PARTS: &[(&str, &str)] = &[
        (
            "parts/chk.inc",
            include_str!("../tests/fixtures/keepalived/parts/chk.inc"),
        ),
        (
            "parts/vi_1.inc",
            include_str!("../tests/fixtures/keepalived/parts/vi_1.inc"),
        ),
        (
            "parts/vi_2.inc",
            include_str!("../tests/fixtures/keepalived/parts/vi_2.inc"),
        ),
    ];
    Includes::Memory(
        PARTS
            .iter()
            .map(|&(path, text)| (PathBuf::from(path), text.to_owned()))
            .collect(),
    )
}

/// `config` as TOML ([`Config::to_toml`]) loads back as `config`.
fn assert_rewrites(config: &Config) {
    let written = config
        .to_toml()
        .unwrap_or_else(|e| panic!("a loaded configuration does not write as TOML: {e}"));
    let back = Config::parse(&written, Path::new("written.toml"))
        .unwrap_or_else(|e| panic!("the TOML written does not load: {e}\n{written}"));
    assert!(
        back == *config,
        "the TOML written loads as another configuration:\n{written}"
    );
}

/// A control-socket request as lbd reads it ([`control::decode_request`]
/// on what one connection sends up to its first newline, within the
/// default [`Limits`]), and the service and backend arguments as lbd's
/// loop parses them. A request that decodes must re-encode (as `lbctl`
/// sends it) to itself, and a service that parses must print as text
/// that parses to it.
///
/// # Panics
/// When one of those round trips does not hold.
pub fn control_request(data: &[u8]) {
    let limits = Limits::default();
    let cap = usize::try_from(limits.request_bytes).unwrap_or(usize::MAX);
    let end = data
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| i + 1)
        .min(cap);
    let request = match control::decode_request(&data[..end], limits) {
        Ok(request) => request,
        Err(message) => return drop(message),
    };
    match &request {
        Request::Drain { service, backend } | Request::Enable { service, backend } => {
            service_round_trip(service);
            let _ = control::parse_backend(backend).map_err(|e| e.to_string());
        }
        Request::Flows {
            service: Some(service),
            ..
        } => service_round_trip(service),
        _ => {}
    }
    let mut again = serde_json::to_vec(&request).expect("a request encodes");
    again.push(b'\n');
    // Encoding may add defaulted fields: no size limit on the way back.
    let unlimited = Limits {
        request_bytes: u64::MAX,
        ..limits
    };
    assert_eq!(
        control::decode_request(&again, unlimited),
        Ok(request),
        "re-encoded as {}",
        again.escape_ascii()
    );
}

/// `service` parses ([`control::parse_service`]) to what its printed form
/// parses to, or not at all.
fn service_round_trip(service: &str) {
    match control::parse_service(service) {
        Ok(key) => assert_eq!(
            control::parse_service(&key.to_string()),
            Ok(key),
            "{service:?} parsed as {key}"
        ),
        Err(e) => drop(e.to_string()),
    }
}

/// The VRRP advertisement codec: [`crate::vrrp::wire::fuzz_parse`].
///
/// # Panics
/// As `fuzz_parse`.
pub fn vrrp_parse(data: &[u8]) {
    crate::vrrp::wire::fuzz_parse(data);
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::TARGETS;
    use crate::config::Config;
    use crate::config::keepalived;

    /// `fuzz/seeds`.
    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds");

    /// Mutations of each seed of the configuration readers: a loaded
    /// configuration is written and read back, some milliseconds in a
    /// debug build, so 300 keep each of these tests near 10 s on two busy
    /// cores.
    const CONFIG_MUTATIONS: usize = 300;

    /// Mutations of each seed of the wire decoders, microseconds each.
    const WIRE_MUTATIONS: usize = 3000;

    /// The seeds of `target`: (file name, bytes), by name.
    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(SEEDS).join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        seeds
    }

    /// SplitMix64: a fixed sequence from a fixed seed, so every run tries
    /// the same inputs and a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// In `0..n` (`n` > 0).
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Bytes that mean something to one of the parsers: brackets, quotes,
    /// separators, digits, signs, newlines, NUL and an invalid UTF-8 byte.
    const INTERESTING: &[u8] = b"{}[]\"'=:,.#!/\\\n 0129-+_ex\0\xff";

    /// `seed` changed by one to four edits: a bit flipped, a byte set to
    /// an interesting one, bytes inserted, a range deleted, the tail cut,
    /// or a slice copied elsewhere (which repeats sections and nests
    /// brackets).
    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(6) {
                0 if at < b.len() => b[at] ^= 1 << rng.below(8),
                1 if at < b.len() => b[at] = INTERESTING[rng.below(INTERESTING.len())],
                2 => {
                    let n = 1 + rng.below(4);
                    let bytes: Vec<u8> = (0..n)
                        .map(|_| INTERESTING[rng.below(INTERESTING.len())])
                        .collect();
                    b.splice(at..at, bytes);
                }
                3 if at < b.len() => {
                    let end = (at + 1 + rng.below(16)).min(b.len());
                    b.drain(at..end);
                }
                4 => b.truncate(at),
                _ if !b.is_empty() => {
                    let from = rng.below(b.len());
                    let end = (from + 1 + rng.below(64)).min(b.len());
                    let slice = b[from..end].to_vec();
                    let at = rng.below(b.len() + 1);
                    b.splice(at..at, slice);
                }
                _ => b.push(INTERESTING[rng.below(INTERESTING.len())]),
            }
        }
        b
    }

    /// Runs `target`'s function on every seed and `mutations` mutations
    /// of each; fails listing each input that panicked (as an escaped
    /// byte string, to keep as a seed once the bug is fixed).
    fn fuzz_seeds(target: &str, mutations: usize) {
        let (_, run) = TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .expect("a target of TARGETS");
        let started = Instant::now();
        let mut rng = Rng(0x6c62_2d66_757a_7a00);
        let mut panicked = Vec::new();
        let mut ran = 0usize;
        for (name, seed) in seeds(target) {
            let inputs = std::iter::once(seed.clone())
                .chain((0..mutations).map(|_| mutate(&mut rng, &seed)));
            for (i, input) in inputs.enumerate() {
                ran += 1;
                if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
                    let what = if i == 0 {
                        "the seed".to_owned()
                    } else {
                        format!("mutation {i}")
                    };
                    panicked.push(format!("{name}, {what}: b\"{}\"", input.escape_ascii()));
                }
            }
        }
        eprintln!("{target}: {ran} inputs in {:?}", started.elapsed());
        assert!(
            panicked.is_empty(),
            "{target}: {} of {ran} inputs panicked:\n{}",
            panicked.len(),
            panicked.join("\n")
        );
    }

    #[test]
    fn config_toml_seeds_and_mutations_do_not_panic() {
        fuzz_seeds("config_toml", CONFIG_MUTATIONS);
    }

    #[test]
    fn keepalived_conf_seeds_and_mutations_do_not_panic() {
        fuzz_seeds("keepalived_conf", CONFIG_MUTATIONS);
    }

    #[test]
    fn control_request_seeds_and_mutations_do_not_panic() {
        fuzz_seeds("control_request", WIRE_MUTATIONS);
    }

    #[test]
    fn vrrp_parse_seeds_and_mutations_do_not_panic() {
        fuzz_seeds("vrrp_parse", WIRE_MUTATIONS);
    }

    #[test]
    fn every_target_has_a_fuzz_binary_and_seeds() {
        let fuzz = Path::new(SEEDS).parent().unwrap();
        for (name, _) in TARGETS {
            let source = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&source)
                .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
            assert!(
                text.contains(&format!("lb_user::fuzzing::{name}(data)")),
                "{} does not call lb_user::fuzzing::{name}",
                source.display()
            );
            assert!(seeds(name).len() >= 3, "{name}: too few seeds");
        }
    }

    /// The includes in memory are where `includes.conf` finds them: it
    /// converts as from disk.
    #[test]
    fn includes_in_memory_read_as_from_disk() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived/includes.conf");
        let (from_disk, _) = keepalived::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (in_memory, _) =
            keepalived::parse_with(&text, Path::new("keepalived.conf"), super::include_parts())
                .unwrap();
        assert_eq!(in_memory.vrrp_instance.len(), 2);
        assert_eq!(in_memory, from_disk);
    }

    /// The seeds taken from whole files (the examples, the keepalived
    /// fixtures) still load, so that the fuzzer starts from configurations
    /// that reach validation and the write-back check, not from early
    /// errors (a seed the schema has left behind would).
    #[test]
    fn whole_file_seeds_load() {
        let parts = super::include_parts();
        let mut failed = Vec::new();
        for (name, bytes) in seeds("config_toml") {
            if name.starts_with("example_")
                && let Err(e) = Config::parse(&String::from_utf8_lossy(&bytes), Path::new(&name))
            {
                failed.push(e.to_string());
            }
        }
        for (name, bytes) in seeds("keepalived_conf") {
            let text = String::from_utf8_lossy(&bytes);
            if name.starts_with("fixture_")
                && Path::new(&name).extension().is_some_and(|e| e == "conf")
                && let Err(e) = keepalived::parse_with(&text, Path::new(&name), parts.clone())
            {
                failed.push(e.to_string());
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    /// The raw strings (`r#"..."#`) of a Rust source file that span lines:
    /// the configurations its tests read.
    fn raw_strings(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("r#\"") {
            let body = &rest[start + 3..];
            let Some(end) = body.find("\"#") else { break };
            if body[..end].contains('\n') {
                out.push(body[..end].to_owned());
            }
            rest = &body[end + 2..];
        }
        out
    }

    /// Write `files` (name, text) into `fuzz/seeds/<target>/`, keeping
    /// what is there already (crashes the fuzzer found among them).
    fn write(target: &str, files: &[(String, Vec<u8>)]) {
        let dir = Path::new(SEEDS).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// The files of `dir` whose names end in `ext`, as seeds named
    /// `prefix` + file name.
    fn files(dir: &Path, ext: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(ext))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (format!("{prefix}{name}"), std::fs::read(&p).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    /// The seeds from the project's fixtures: `examples/**/*.toml` and the
    /// configurations of `config/tests.rs`; the keepalived.conf fixtures
    /// (`tests/fixtures/keepalived`) and the multi-line configurations of
    /// `config/keepalived/tests.rs`; each control request encoded as
    /// `lbctl` sends it.
    #[test]
    #[ignore = "writes fuzz/seeds: run by hand when fixtures change"]
    fn write_seeds() {
        use crate::api::control::Request;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let examples = root.join("../examples");
        let mut toml = files(&examples, ".toml", "example_");
        for sub in ["bird", "lab"] {
            toml.extend(files(
                &examples.join(sub),
                ".toml",
                &format!("example_{sub}_"),
            ));
        }
        let tests = std::fs::read_to_string(root.join("src/config/tests.rs")).unwrap();
        for (i, text) in raw_strings(&tests).into_iter().enumerate() {
            toml.push((format!("tests_rs_{i:02}.toml"), text.into_bytes()));
        }
        write("config_toml", &toml);

        let fixtures = root.join("tests/fixtures/keepalived");
        let mut conf = files(&fixtures, ".conf", "fixture_");
        conf.extend(files(&fixtures.join("parts"), ".inc", "fixture_parts_"));
        let tests = std::fs::read_to_string(root.join("src/config/keepalived/tests.rs")).unwrap();
        for (i, text) in raw_strings(&tests).into_iter().enumerate() {
            conf.push((format!("tests_rs_{i:02}.conf"), text.into_bytes()));
        }
        write("keepalived_conf", &conf);

        let service = || "198.18.0.100:80".to_owned();
        let backend = || "198.18.0.11".to_owned();
        let requests = [
            Request::Status,
            Request::Services,
            Request::Backends,
            Request::Vrrp,
            Request::Stats,
            Request::Reload,
            Request::Drain {
                service: service(),
                backend: backend(),
            },
            Request::Enable {
                service: "[2001:db8::100]:53/udp".to_owned(),
                backend: "2001:db8::11".to_owned(),
            },
            Request::Flows {
                service: None,
                limit: 0,
            },
            Request::Flows {
                service: Some(format!("{}/tcp", service())),
                limit: 10,
            },
        ];
        let json: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut bytes = serde_json::to_vec(r).unwrap();
                bytes.push(b'\n');
                let command = serde_json::to_value(r).unwrap()["command"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (format!("{i:02}_{command}.json"), bytes)
            })
            .collect();
        write("control_request", &json);
    }
}
