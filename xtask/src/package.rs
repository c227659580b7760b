//! `cargo xtask package`: lb as a Debian package, built with dpkg-deb
//! (Debian's own tool, already on every Debian machine) from a staged tree,
//! so the package holds exactly what is listed here:
//!
//! | path | from |
//! |---|---|
//! | /usr/sbin/lbd, /usr/sbin/lbctl | the release build |
//! | /lib/systemd/system/lbd.service | dist/lbd.service |
//! | /etc/lb/lb.toml (a conffile) | examples/lb.toml |
//! | /usr/share/man/man8/lbd*.8.gz, lbctl*.8.gz, man5/lb.toml.5.gz | lb-docs (clap, the config schema) |
//! | bash, zsh and fish completions | lb-docs (clap_complete) |
//! | /usr/share/lb/lb.schema.json | lb-docs |
//! | /usr/share/lb/grafana/ | dist/grafana/ |
//! | /usr/share/doc/lb/ | README, docs (keepalived.md: the migration note), examples |
//!
//! The maintainer scripts are dist/debian/{postinst,prerm,postrm}. The
//! unit is installed, not enabled or started: the example configuration
//! names an interface the operator has to choose first (README, Install).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{
    build::{self, cargo, workspace_root},
    exec::exec,
    setup::BpfToolchain,
};

/// The package's name.
const NAME: &str = "lb";

/// Build the release binaries and the generated docs, stage the tree and
/// build `target/debian/lb_VERSION_ARCH.deb`; returns its path.
pub fn run(tc: &BpfToolchain) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    build::release(tc)?;
    exec(cargo(tc).args(["build", "--package", "lb-lab", "--bin", "lb-docs"]))?;
    let version = format!("{}-1", crate_version(&root.join("lb-user/Cargo.toml"))?);
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let generated = out_dir.join("generated");
    if generated.exists() {
        fs::remove_dir_all(&generated)?;
    }
    exec(Command::new(root.join("target/debug/lb-docs")).arg(&generated))?;

    let release = root.join("target/release");
    for bin in ["lbd", "lbctl"] {
        install(&release.join(bin), &stage.join("usr/sbin").join(bin), 0o755)?;
    }
    install(
        &root.join("dist/lbd.service"),
        &stage.join("lib/systemd/system/lbd.service"),
        0o644,
    )?;
    install(
        &root.join("examples/lb.toml"),
        &stage.join("etc/lb/lb.toml"),
        0o644,
    )?;
    stage_generated(&generated, &stage)?;
    stage_docs(&root, &stage, &version)?;

    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &root.join("dist/debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    fs::write(debian.join("conffiles"), "/etc/lb/lb.toml\n")?;
    fs::write(debian.join("md5sums"), md5sums(&stage)?)?;
    let control = control(&stage, &version, &arch, &release.join("lbd"))?;
    fs::write(debian.join("control"), control)?;

    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    exec(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("xtask: package: {}", deb.display());
    eprintln!("xtask: install it with: sudo apt install {}", deb.display());
    Ok(deb)
}

/// `version = "..."` of a crate's `[package]`.
fn crate_version(manifest: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(manifest)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("version = \"")
                .and_then(|rest| rest.strip_suffix('"'))
        })
        .map(str::to_owned)
        .with_context(|| format!("no version in {}", manifest.display()))
}

/// Copy `from` to `to` (parents created) with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A command's stdout, trimmed; fails unless it exits 0.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {}", cmd.get_program().display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            cmd.get_program().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Man pages (gzipped, as Debian installs them), completions and the
/// schema from lb-docs' output.
fn stage_generated(generated: &Path, stage: &Path) -> anyhow::Result<()> {
    for section in ["man5", "man8"] {
        let dir = generated.join("man").join(section);
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().context("a page has a name")?;
            let to = stage.join("usr/share/man").join(section).join(name);
            install(&path, &to, 0o644)?;
            gzip(&to)?;
        }
    }
    let completions = [
        ("bash/lbd", "usr/share/bash-completion/completions/lbd"),
        ("bash/lbctl", "usr/share/bash-completion/completions/lbctl"),
        ("zsh/_lbd", "usr/share/zsh/vendor-completions/_lbd"),
        ("zsh/_lbctl", "usr/share/zsh/vendor-completions/_lbctl"),
        (
            "fish/lbd.fish",
            "usr/share/fish/vendor_completions.d/lbd.fish",
        ),
        (
            "fish/lbctl.fish",
            "usr/share/fish/vendor_completions.d/lbctl.fish",
        ),
    ];
    for (from, to) in completions {
        install(
            &generated.join("completions").join(from),
            &stage.join(to),
            0o644,
        )?;
    }
    install(
        &generated.join("lb.schema.json"),
        &stage.join("usr/share/lb/lb.schema.json"),
        0o644,
    )
}

/// /usr/share/doc/lb: the README, the docs, the examples, the copyright
/// and a changelog, as Debian policy asks.
fn stage_docs(root: &Path, stage: &Path, version: &str) -> anyhow::Result<()> {
    let doc = stage.join("usr/share/doc").join(NAME);
    install(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    for entry in fs::read_dir(root.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            install(&path, &doc.join(path.file_name().context("named")?), 0o644)?;
        }
    }
    copy_tree(&root.join("examples"), &doc.join("examples"))?;
    let grafana = root.join("dist/grafana");
    if grafana.is_dir() {
        copy_tree(&grafana, &stage.join("usr/share/lb/grafana"))?;
    }
    fs::write(
        doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: lb\n\n\
         Files: *\n\
         License: MIT or Apache-2.0\n \
         lb is dual-licensed under the MIT license and the Apache License 2.0;\n \
         on Debian systems the Apache License 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n",
    )?;
    let date = output(Command::new("date").arg("-R"))?;
    let changelog = doc.join("changelog.Debian");
    fs::write(
        &changelog,
        format!(
            "{NAME} ({version}) unstable; urgency=medium\n\n  \
             * Built by cargo xtask package.\n\n -- lb developers <lb@localhost>  {date}\n"
        ),
    )?;
    gzip(&changelog)
}

/// Copy a directory tree, files 0644.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let dest = to.join(path.file_name().context("named")?);
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            install(&path, &dest, 0o644)?;
        }
    }
    Ok(())
}

/// `gzip -9n` in place (no name or time stamp: reproducible).
fn gzip(path: &Path) -> anyhow::Result<()> {
    exec(Command::new("gzip").args(["-9nf"]).arg(path))
}

/// DEBIAN/md5sums: every file under the stage but DEBIAN.
fn md5sums(stage: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    walk(stage, &mut files)?;
    files.sort();
    let mut out = String::new();
    for f in files {
        let rel = f.strip_prefix(stage)?;
        if rel.starts_with("DEBIAN") {
            continue;
        }
        let sum = output(Command::new("md5sum").arg(&f))?;
        let hash = sum
            .split_whitespace()
            .next()
            .context("md5sum prints a sum")?;
        let _ = writeln!(out, "{hash}  {}", rel.display());
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// DEBIAN/control. The C library version is the newest GLIBC symbol
/// version lbd uses (what dpkg-shlibdeps would find).
fn control(stage: &Path, version: &str, arch: &str, lbd: &Path) -> anyhow::Result<String> {
    let symbols = output(Command::new("objdump").arg("-T").arg(lbd))?;
    let glibc = symbols
        .split_whitespace()
        .filter_map(|w| w.trim_matches(['(', ')']).strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .context("lbd links no GLIBC symbol")?;
    let kib = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )?;
    let installed = kib.split_whitespace().next().unwrap_or("0");
    Ok(format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: lb developers <lb@localhost>\n\
         Installed-Size: {installed}\n\
         Depends: libc6 (>= {}.{}), libgcc-s1, procps\n\
         Recommends: bpftool\n\
         Suggests: bird2\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP layer-4 load balancer with keepalived-compatible VRRP\n \
         lbd forwards packets for virtual services (VIP:port/protocol) to backends\n \
         in the kernel's XDP hook, chosen by a Maglev hash of the connection and\n \
         pinned in a connection table (dsr, ipip, nat, fullnat). It health-checks\n \
         the backends, runs VRRP (v2 and v3, interoperating with keepalived) so one\n \
         node holds each VIP, syncs connections between nodes, and can announce\n \
         VIPs over BGP instead. lbctl inspects and steers it; it exports\n \
         Prometheus metrics. It reads its own TOML file or a keepalived.conf.\n",
        glibc.0, glibc.1
    ))
}
