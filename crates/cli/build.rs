//! Puts the commit the binary is built from and the drivers built in into `vmove --version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    // Built from a git checkout: the commit checked out (uncommitted changes are not told);
    // from a source archive: "unknown".
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    // Rebuilt when HEAD moves (a checkout) or its branch does (a commit), not at every build.
    if let Some(p) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let mut drivers = vec!["sim"];
    if std::env::var_os("CARGO_FEATURE_LIBVIRT").is_some() {
        drivers.push("libvirt");
    }
    if std::env::var_os("CARGO_FEATURE_HYPERV").is_some() {
        drivers.push("hyperv");
    }
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=VMOVE_VERSION_TEXT={version} (commit {commit}; drivers: {})",
        drivers.join(", ")
    );
}
