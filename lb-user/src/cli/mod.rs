//! The command lines of `lbd` and `lbctl`, in the library so that the
//! binaries parse them and `lb-docs` (lb-lab) makes the man pages and shell
//! completions from the same definitions: the manual cannot drift from
//! `--help`.

pub mod lbctl;
pub mod lbd;
