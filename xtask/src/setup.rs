//! `cargo xtask setup`: make this machine able to build and test lb.
//!
//! The BPF target is tier 3: it needs `-Z build-std=core`, so a toolchain
//! with the Rust library source, and `bpf-linker`. Two toolchains qualify:
//! a rustup nightly that has `rust-src`, or Debian's `rustc-web` (with
//! `rust-web-src`) linked into rustup as `lb-debian`. We use whichever is
//! present and install the Debian one when neither is. Everything is checked
//! first and installed only when missing, so a second run is quick.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::exec::{exec, probe};

/// Debian packages the tests and tools need whatever the toolchain.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",       // bpf-linker links against LLVM 22
    "bpftool",           // map dumps, used by tests and operators
    "iproute2",          // ip: namespaces, veths, addresses
    "ethtool",           // offload settings on veths
    "iputils-ping",      // reachability probes in tests
    "keepalived",        // VRRP interop tests: the reference peer
    "tshark",            // VRRP tests: decode lbd's adverts independently
    "nginx",             // daemon tests and the lab: real HTTP backends
    "redis-server",      // the lab's second protocol; the lab's fullnat servers
    "mariadb-server",    // fullnat test: the user's seed, MySQL servers behind the VIP
    "gnuplot-nox",       // cargo xtask bench: the report's plot
    "wrk",               // bench paths: HTTP load generator
    "haproxy",           // bench paths: the user-space proxy compared against
    "nftables",          // bench paths: kernel DNAT compared against; backend counters
    "bird2",             // scale-out: the BGP speaker lbd announces VIPs through
    "etcd-server",       // scale-out: backends register under etcd leases
    "protobuf-compiler", // protoc: the etcd client's gRPC code is generated at build time
    "libprotobuf-dev",   // protoc's well-known types, which etcd's .proto files import
    "debootstrap",       // package test: the Debian root its systemd boots from
    "systemd-container", // package test: systemd-nspawn boots that root under systemd
    "tmux",              // lbctl top's test: runs it in a terminal, reads the screen
    "man-db",            // the man pages' test: man renders each without a warning
];
/// Debian's Rust toolchain with library source, for the BPF build when no
/// nightly with rust-src exists.
const DEBIAN_RUST: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// rustup name under which Debian's /usr toolchain is linked.
const DEBIAN_TOOLCHAIN: &str = "lb-debian";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// The rustup toolchain that builds the BPF program.
#[derive(Debug, Clone)]
pub struct BpfToolchain {
    /// Name for `rustup run` (exported to lb-user's build.rs).
    pub name: String,
}

/// Whether we run as root.
pub fn is_root() -> bool {
    probe(Command::new("id").arg("-u"))
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether `rustup run TOOLCHAIN` has the Rust library source.
fn has_rust_src(toolchain: &str) -> bool {
    probe(Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"]))
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib/src/rust/library/core")
                .is_dir()
        })
}

fn missing_packages(packages: &[&str]) -> Vec<String> {
    let out = probe(
        Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Abbrev} ${Package}\n"])
            .args(packages),
    );
    let installed: Vec<String> = out
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("ii ").map(|p| p.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    packages
        .iter()
        .filter(|p| !installed.iter().any(|i| i == *p))
        .map(|p| (*p).to_owned())
        .collect()
}

fn install_packages(missing: &[String]) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}; install them with `sudo apt-get install -y {list}`"
        );
    }
    eprintln!("setup: installing Debian packages: {list}");
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing),
    )
    .with_context(|| format!("installing {list}"))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let version = probe(Command::new("bpf-linker").arg("--version"))
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if version.as_deref() == Some(&format!("bpf-linker {BPF_LINKER_VERSION}")) {
        eprintln!("setup: found bpf-linker {BPF_LINKER_VERSION}");
        return Ok(());
    }
    eprintln!(
        "setup: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (found: {})",
        version.as_deref().unwrap_or("none")
    );
    exec(
        Command::new("cargo")
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
    .context(
        "building bpf-linker failed; it needs llvm-22-dev \
         (`apt-get install llvm-22-dev`) and network access to crates.io",
    )
}

fn ensure_debian_toolchain() -> anyhow::Result<()> {
    let listed = probe(Command::new("rustup").args(["toolchain", "list"])).is_some_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with(DEBIAN_TOOLCHAIN))
    });
    if !listed {
        eprintln!("setup: linking Debian's rustc (/usr) into rustup as {DEBIAN_TOOLCHAIN}");
        exec(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]))?;
    }
    if !has_rust_src(DEBIAN_TOOLCHAIN) {
        bail!(
            "toolchain {DEBIAN_TOOLCHAIN} (/usr) has no library source; \
             install it with `apt-get install rust-web-src`"
        );
    }
    Ok(())
}

/// Check everything, install what is missing, return the BPF toolchain.
pub fn run() -> anyhow::Result<BpfToolchain> {
    let nightly = has_rust_src("nightly");
    let mut wanted: Vec<&str> = PACKAGES.to_vec();
    if !nightly {
        wanted.extend_from_slice(DEBIAN_RUST);
    }
    let missing = missing_packages(&wanted);
    if missing.is_empty() {
        eprintln!("setup: found Debian packages: {}", wanted.join(" "));
    }
    install_packages(&missing)?;
    ensure_bpf_linker()?;
    let name = if nightly {
        eprintln!("setup: BPF toolchain: rustup nightly (has rust-src)");
        "nightly"
    } else {
        ensure_debian_toolchain()?;
        eprintln!(
            "setup: BPF toolchain: Debian rustc-web at /usr, linked as {DEBIAN_TOOLCHAIN} \
             (rustup nightly has no rust-src here)"
        );
        DEBIAN_TOOLCHAIN
    };
    Ok(BpfToolchain {
        name: name.to_owned(),
    })
}
