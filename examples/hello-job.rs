//! The smallest job to put behind rollcall: it prints where it stands in
//! the cluster, from what rollcall adds to its environment, and exits 0.
//!
//! ```text
//! $ rollcall -h hosts --barrier -- hello-job
//! READY
//! peer 3 of 5 (peer3): peer1,peer2,peer3,peer4,peer5
//! ```
//!
//! `READY` is rollcall's own line; the second is this program's.
//! deploy/compose/job runs it in five containers, linked statically
//! (`make job-image`), so that it needs nothing from its image but itself.
//! Started without rollcall in front, it says what is missing and exits 2.

use std::env;
use std::io::{self, Write};
use std::process::ExitCode;

/// The variables rollcall sets for the command it runs.
const VARS: [&str; 4] = [
    "ROLLCALL_INDEX",
    "ROLLCALL_SIZE",
    "ROLLCALL_NAME",
    "ROLLCALL_PEERS",
];

fn main() -> ExitCode {
    let mut values = Vec::with_capacity(VARS.len());
    for var in VARS {
        match env::var(var) {
            Ok(value) => values.push(value),
            Err(_) => {
                eprintln!(
                    "hello-job: {var} is not set: start it as `rollcall [OPTIONS] -- hello-job`"
                );
                return ExitCode::from(2);
            }
        }
    }
    let [index, size, name, peers] = &values[..] else {
        unreachable!("one value per variable")
    };
    let line = format!("peer {index} of {size} ({name}): {peers}\n");
    // One write, so that the line is never torn, and a failing stdout (a
    // pipe closed by its reader) is an exit status of 1 rather than a panic.
    match io::stdout().lock().write_all(line.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-job: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
