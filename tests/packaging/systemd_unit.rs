//! The service unit as shipped (systemd/campeer.service): `systemd-analyze verify` finds nothing
//! to complain about and `systemd-analyze security` rates its exposure 2.5 or lower. The unit
//! is checked as it is, except that ExecStart points at the binary just built (verify insists
//! that the program exists, and nothing is installed into /usr/bin by a test).

use std::process::Command;

const UNIT: &str = include_str!("../../systemd/campeer.service");

/// The unit in a temporary directory, runnable as it stands.
fn unit_with_built_binary() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let unit = UNIT.replace(
        "ExecStart=/usr/bin/campeer ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_campeer")),
    );
    assert_ne!(unit, UNIT, "the unit starts /usr/bin/campeer");
    let path = dir.path().join("campeer.service");
    std::fs::write(&path, unit).expect("write the unit");
    (dir, path)
}

fn systemd_analyze(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("systemd-analyze is needed (tests/run installs systemd): {e}")
        }
        Err(e) => {
            eprintln!("skipping: no systemd-analyze here ({e})");
            None
        }
    }
}

#[test]
fn the_unit_verifies_cleanly() {
    let _load = common::load::shared();
    let (_dir, path) = unit_with_built_binary();
    let Some(out) = systemd_analyze(&["verify", path.to_str().unwrap()]) else {
        return;
    };
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

#[test]
fn the_unit_is_hardened() {
    let _load = common::load::shared();
    let (_dir, path) = unit_with_built_binary();
    let Some(out) = systemd_analyze(&["security", "--offline=yes", path.to_str().unwrap()]) else {
        return;
    };
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|line| {
            let rest = line.split("Overall exposure level for").nth(1)?;
            rest.split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.5, "exposure {score} is above 2.5:\n{report}");
    for setting in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=campeer",
        "MemoryMax=",
        "TasksMax=",
        "LimitNOFILE=",
    ] {
        assert!(UNIT.contains(setting), "the unit lacks {setting}");
    }
}
