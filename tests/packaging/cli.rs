//! The command line: --help explains every flag, and a bad value fails with the key's name.

use std::process::Command;

fn campeer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_campeer"))
        .args(args)
        .env_remove("CAMPEER_BROKER")
        .output()
        .expect("run campeer")
}

#[test]
fn help_lists_every_flag() {
    let _load = common::load::shared();
    let out = campeer(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--log",
        "--broker",
        "--mqtt-username",
        "--mqtt-password",
        "--prefix",
        "--client-id",
        "--device-id",
        "--source",
        "--width",
        "--height",
        "--fps",
        "--bitrate-kbps",
        "--keyframe-interval",
        "--h264-passthrough",
        "--audio-source",
        "--audio-channels",
        "--audio-bitrate-kbps",
        "--max-viewers",
        "--session-timeout",
        "--idle-grace",
        "--keyframe-min-interval-ms",
        "--ice-server",
        "--ice-interface",
        "--ice-loopback-only",
        "--http-listen",
        "--public",
        "--public-without-password",
        "--connect-timeout",
        "--broker-ws-url",
        "--embedded-broker-listen",
        "--embedded-broker-ws-listen",
        "--embedded-broker-username",
        "--embedded-broker-password",
        "--mqtt-keep-alive",
        "--mqtt-ca-file",
        "--mqtt-client-cert",
        "--mqtt-client-key",
        "--ice-tls-ca-file",
        "--page-ice-server",
        "devices",
        "CAMPEER_BROKER",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    // Defaults come from the configuration schema, shown beside each flag.
    let width = help
        .lines()
        .skip_while(|line| !line.contains("--width"))
        .take_while(|line| !line.contains("--height"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(width.contains("[default: 640]"), "{width}");
}

#[test]
fn bad_values_name_the_key() {
    let _load = common::load::shared();
    let out = campeer(&["--broker", "mqtt://127.0.0.1:1", "--width", "641"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("video.width"), "{err}");
    let out = campeer(&["--broker", "mqtt://127.0.0.1:1", "--audio-channels", "6"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audio.channels"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("campeer.toml");
    std::fs::write(&file, "[video]\nfps = 500\n").unwrap();
    let out = campeer(&[
        "--config",
        file.to_str().unwrap(),
        "--broker",
        "mqtt://127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("video.fps"), "{err}");

    std::fs::write(&file, "[video]\nframerate = 5\n").unwrap();
    let out = campeer(&["--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("framerate"), "{err}");
}

#[test]
fn flags_beat_the_environment() {
    let _load = common::load::shared();
    let out = Command::new(env!("CARGO_BIN_EXE_campeer"))
        .args(["--broker", "mqtt://127.0.0.1:1", "--fps", "0"])
        .env("CAMPEER_FPS", "25")
        .output()
        .expect("run campeer");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("video.fps"));
}
