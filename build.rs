//! Records which commit and which build this is, for `rollcall --version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
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
    // traps to the hypervisor on a virtual machine: a sixth of the CPU a
    // dynamically linked rollcall spends on starting (README,
    // Performance). Not under a fuzzer, whose C++ runtime brings
    // libgcc_s's own.
    let var = |name| std::env::var(name).unwrap_or_default();
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && std::env::var_os("CARGO_CFG_FUZZING").is_none()
    {
        println!("cargo:rustc-link-lib=gcc_eh");
    }
}
