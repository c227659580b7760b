//! `lb-docs DIR`: write lb's man pages, shell completions and the
//! configuration's JSON Schema under DIR (`lb_lab::docs`); `cargo xtask
//! package` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: lb-docs DIR   (writes man/, completions/ and lb.schema.json under DIR)");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    match lb_lab::docs::write_all(&dir) {
        Ok(files) => {
            for f in &files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lb-docs: writing under {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
