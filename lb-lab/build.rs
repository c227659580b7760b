//! Builds the test-only XDP object (`lb-lab/ebpf`, binary `lb-lab-progs`)
//! into `OUT_DIR`, where `lb_lab::TEST_OBJ` embeds it. The toolchain logic
//! is lb-user's (`lb-user/bpf_build.rs`).

#[path = "../lb-user/bpf_build.rs"]
mod bpf_build;

fn main() -> anyhow::Result<()> {
    bpf_build::build_ebpf("lb-lab-ebpf", concat!(env!("CARGO_MANIFEST_DIR"), "/ebpf"))
}
