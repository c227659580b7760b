//! Builds the XDP objects of `lb-ebpf` (`lb-ebpf`: the balancer;
//! `lb-decap`: the decapsulator) and places them in `OUT_DIR`, where
//! `lb-user` embeds them. How: `bpf_build.rs`.

#[path = "bpf_build.rs"]
mod bpf_build;

fn main() -> anyhow::Result<()> {
    bpf_build::build_ebpf(
        "lb-ebpf",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf"),
    )
}
