//! The conventions people expect of a command-line tool: `--version` that says what was built,
//! shell completions and a man page generated from the CLI's own definition.
#![allow(clippy::unwrap_used)]

use crate::common::Sandbox;

#[test]
fn version_names_the_commit_and_the_drivers_built_in() {
    let sb = Sandbox::new("version");
    let r = sb.run(&["--version"]);
    r.expect_code(0);
    let line = r.stdout.trim();
    let rest = line
        .strip_prefix(&format!("vmove {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, drivers) = rest
        .split_once("; drivers: ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
    let drivers: Vec<&str> = drivers.trim_end_matches(')').split(", ").collect();
    assert_eq!(drivers[0], "sim", "{line}");
    for d in &drivers[1..] {
        assert!(["libvirt", "hyperv"].contains(d), "{line}");
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    let sb = Sandbox::new("completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = sb.run(&["completions", shell]);
        r.expect_code(0);
        assert!(r.stdout.contains("evacuate"), "{shell}: {}", r.stdout);
        assert!(r.stdout.contains("journal"), "{shell}: {}", r.stdout);
    }
    let r = sb.run(&["completions", "tcsh"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("bash"),
        "the possible values are listed: {}",
        r.stderr
    );
}

#[test]
fn the_man_page_is_generated_without_reading_any_config() {
    let sb = Sandbox::new("man");
    // A config that cannot be read stops every command that reads it, not these.
    sb.write("vmove.toml", "[hosts.a\n");
    let r = sb.run(&["man"]);
    r.expect_code(0);
    assert!(r.stdout.contains(".TH vmove 1"), "{}", r.stdout);
    assert!(r.stdout.contains("evacuate"), "{}", r.stdout);
    sb.run(&["completions", "bash"]).expect_code(0);
    sb.run(&["config"]).expect_code(1);
}
