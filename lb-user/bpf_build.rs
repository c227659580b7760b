//! Builds XDP objects for `bpfel-unknown-none` with `aya_build`; shared
//! by `lb-user/build.rs` (the production objects) and `lb-lab/build.rs`
//! (the test-only object), which include this file with `#[path]`.
//!
//! The BPF target needs a toolchain with the Rust library source (for
//! `-Z build-std=core`) and `bpf-linker` on `PATH`. `cargo xtask setup`
//! installs one and exports its rustup name as `LB_BPF_TOOLCHAIN`; without
//! that variable we probe the candidates ourselves, so a plain `cargo build`
//! works after setup too.

use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// rustup toolchains that can build BPF, in the order we try them:
/// a nightly with `rust-src`, then Debian's rustc linked as `lb-debian`.
const CANDIDATES: [&str; 2] = ["nightly", "lb-debian"];

fn has_rust_src(toolchain: &str) -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    out.status.success()
        && Path::new(String::from_utf8_lossy(&out.stdout).trim())
            .join("lib/rustlib/src/rust/library/core")
            .is_dir()
}

/// Build every binary (XDP object) of package `name` at `root_dir` for
/// `bpfel-unknown-none` into `OUT_DIR`, one file per binary.
///
/// # Errors
/// No toolchain can build BPF, or the build fails.
pub fn build_ebpf(name: &'static str, root_dir: &'static str) -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=LB_BPF_TOOLCHAIN");
    let toolchain = match std::env::var("LB_BPF_TOOLCHAIN") {
        Ok(name) => name,
        Err(_) => CANDIDATES
            .into_iter()
            .find(|name| has_rust_src(name))
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "no toolchain can build the BPF program (tried {CANDIDATES:?}): \
                     run `cargo xtask setup`"
                )
            })?,
    };
    // Debian's rustc is a stable compiler; build-std is a -Z flag.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let ebpf = Package {
        name,
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::Custom(&toolchain))
        .with_context(|| format!("building {name} with toolchain {toolchain}"))
}
