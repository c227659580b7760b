//! Library target of `lb-lab-ebpf`: empty on purpose. `lb-lab`
//! build-depends on it so cargo rebuilds the test object when these
//! programs change (see `aya_build::build_ebpf`); the programs are the
//! `lb-lab-progs` binary (`src/main.rs`).
#![no_std]
