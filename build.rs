//! Records which commit and which build this is, for `rollcall --version`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The C toolchain the final link goes through knows libgcc_eh.a.
fn has_libgcc_eh() -> bool {
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    Command::new(linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .is_some_and(|path| path.is_absolute() && path.exists())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves, not at every change of the work tree.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &reference])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=ROLLCALL_BUILD=commit {commit}, {profile} build for {target}");
    // The unwinder from libgcc's archive, as a statically linked build
    // has it, rather than from libgcc_s.so, whose loading runs a
    // constructor that probes the CPU with `cpuid`, an instruction that
    // traps to the hypervisor on a virtual machine: 0.2 of the 1.4 ms of
    // CPU a dynamically linked rollcall spent on starting (README,
    // Performance). Only where the C toolchain has that archive (zig cc
    // or clang with compiler-rt may not), not when the C runtime is linked
    // statically (the standard library links it then), and not under a
    // fuzzer, whose C++ runtime brings libgcc_s's own.
    let var = |name| std::env::var(name).unwrap_or_default();
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && !var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
        && std::env::var_os("CARGO_CFG_FUZZING").is_none()
        && has_libgcc_eh()
    {
        println!("cargo:rustc-link-lib=gcc_eh");
    }
}
