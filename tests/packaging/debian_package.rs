//! The Debian package for the Pi (`cargo deb --target aarch64-unknown-linux-gnu`, built by
//! tests/run and passed in CAMPEER_AARCH64_DEB): arm64, depends on what the binary links, and
//! holds the binary, the unit, the commented configuration as a conffile and the system user;
//! its scripts enable and start nothing, and it installs, removes and purges cleanly in a fresh
//! Debian bookworm root (debootstrap, needs root as CI has).
//!
//! Under CI=true the package must be there; elsewhere the test skips and says why.

use std::process::Command;

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_arm64_package_holds_the_service_and_enables_nothing() {
    let _load = common::load::shared();
    let deb = match std::env::var("CAMPEER_AARCH64_DEB") {
        Ok(path) => path,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CAMPEER_AARCH64_DEB is not set: tests/run builds the package first")
        }
        Err(_) => {
            eprintln!("skipping: CAMPEER_AARCH64_DEB is not set (tests/run builds the package)");
            return;
        }
    };
    let field = |name: &str| dpkg_deb(&["--field", &deb, name]).trim().to_owned();
    assert_eq!(field("Package"), "campeer");
    assert_eq!(field("Architecture"), "arm64");
    let version = field("Version");
    assert!(
        version.starts_with(env!("CARGO_PKG_VERSION")),
        "version {version}"
    );
    let depends = field("Depends");
    for needed in ["libasound2", "libvpx7", "libc6", "systemd"] {
        assert!(
            depends.contains(needed),
            "Depends lacks {needed}: {depends}"
        );
    }

    let contents = dpkg_deb(&["--contents", &deb]);
    for path in [
        "./usr/bin/campeer",
        "./lib/systemd/system/campeer.service",
        "./etc/campeer/campeer.toml",
        "./usr/lib/sysusers.d/campeer.conf",
    ] {
        assert!(contents.contains(path), "{path} is missing:\n{contents}");
    }

    let control = tempfile::tempdir().expect("a temporary directory");
    let dir = control.path().to_str().unwrap();
    dpkg_deb(&["--control", &deb, dir]);
    let read = |name: &str| std::fs::read_to_string(control.path().join(name)).unwrap_or_default();
    assert!(read("conffiles").contains("/etc/campeer/campeer.toml"));
    let postinst = read("postinst");
    assert!(
        postinst.contains("sysusers"),
        "postinst creates the user:\n{postinst}"
    );
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        let text = read(script);
        assert!(
            !text.contains("systemctl enable")
                && !text.contains("systemctl start")
                && !text.contains("deb-systemd-invoke"),
            "{script} enables or starts the service:\n{text}"
        );
    }
}

/// Installs the package into a fresh Debian bookworm (debootstrap) and back out again: the
/// system user and group appear, the configuration is readable by that group only, nothing
/// is enabled, removing keeps the configuration and purging removes it. The arm64 package goes
/// into an amd64 root with --force-architecture: only its files and scripts are exercised.
#[test]
fn the_package_installs_creates_its_user_and_enables_nothing() {
    let _load = common::load::shared();
    let Ok(deb) = std::env::var("CAMPEER_AARCH64_DEB") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CAMPEER_AARCH64_DEB is not set: tests/run builds the package first"
        );
        eprintln!("skipping: CAMPEER_AARCH64_DEB is not set (tests/run builds the package)");
        return;
    };
    let root = tempfile::tempdir().expect("a temporary directory");
    let root_path = root.path().to_str().unwrap().to_owned();
    let bootstrap = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,adduser",
            "bookworm",
            &root_path,
            "http://deb.debian.org/debian",
        ])
        .output()
        .expect("run debootstrap (tests/run installs it)");
    assert!(
        bootstrap.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    std::fs::copy(&deb, root.path().join("tmp/campeer.deb")).expect("copy the package");
    let chroot = |args: &[&str]| {
        let out = Command::new("chroot")
            .arg(&root_path)
            .args(args)
            .output()
            .expect("run chroot");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };

    let (installed, _) = chroot(&[
        "dpkg",
        "--force-architecture",
        "--force-depends",
        "-i",
        "/tmp/campeer.deb",
    ]);
    assert!(installed, "dpkg -i failed");
    let (has_user, user) = chroot(&["getent", "passwd", "campeer"]);
    assert!(
        has_user && user.ends_with(":/nonexistent:/usr/sbin/nologin"),
        "{user}"
    );
    assert!(chroot(&["getent", "group", "campeer"]).0);
    let (_, mode) = chroot(&["stat", "-c", "%a %U %G", "/etc/campeer/campeer.toml"]);
    assert_eq!(mode, "640 root campeer");
    let (_, enabled) = chroot(&["systemctl", "is-enabled", "campeer"]);
    assert_eq!(
        enabled, "disabled",
        "installing must not enable the service"
    );

    assert!(chroot(&["dpkg", "-r", "campeer"]).0);
    assert!(
        root.path().join("etc/campeer/campeer.toml").exists(),
        "remove keeps the config"
    );
    assert!(!root.path().join("usr/bin/campeer").exists());
    assert!(chroot(&["dpkg", "-P", "campeer"]).0);
    assert!(
        !root.path().join("etc/campeer/campeer.toml").exists(),
        "purge removes it"
    );
}
