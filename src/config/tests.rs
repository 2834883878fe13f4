use super::*;
use clap::{Args, FromArgMatches};
use std::time::Duration;

fn resolve(toml_text: &str, flags: Overrides) -> Result<Config, ConfigError> {
    Config::resolve(FileConfig::parse(toml_text)?, flags)
}

fn key_of(err: ConfigError) -> String {
    match err {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("expected an invalid key, got {other}"),
    }
}

#[test]
fn defaults_match_the_documentation() {
    let config = resolve("", Overrides::default()).unwrap();
    assert_eq!(config.video.width, 640);
    assert_eq!(config.video.height, 480);
    assert_eq!(config.video.fps, 30);
    assert_eq!(config.video.bitrate_bps(), 1_500_000);
    assert_eq!(config.video.source, SourceKind::Auto);
    assert_eq!(
        config.video.keyframe_interval(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(config.sessions.max_viewers, 4);
    assert_eq!(
        config.audio,
        AudioConfig {
            source: AudioSourceKind::Auto,
            channels: 1,
            bitrate_kbps: 32
        }
    );
    assert_eq!(config.mqtt.prefix.to_string(), "campeer");
    assert!(config.mqtt.brokers.is_empty());
    assert!(!config.ice.loopback_only);
    let prefix = format!("campeer-{}-", config.device_id);
    let suffix = config
        .mqtt
        .client_id()
        .strip_prefix(&prefix)
        .expect("the device id in the client id");
    assert!(
        suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        config.mqtt.client_id()
    );
}

#[test]
fn flags_win_over_the_file() {
    let file = r#"
        [mqtt]
        broker = "mqtt://10.0.0.1"
        [video]
        width = 320
        height = 240
        [sessions]
        max_viewers = 2
    "#;
    let flags = Overrides {
        broker: vec!["mqtt://127.0.0.1:1999".into()],
        width: Some(1280),
        ..Default::default()
    };
    let config = resolve(file, flags).unwrap();
    assert_eq!(
        config.mqtt.brokers,
        [BrokerAddress {
            host: "127.0.0.1".into(),
            port: 1999,
            tls: false
        }]
    );
    assert_eq!(config.video.width, 1280);
    assert_eq!(config.video.height, 240);
    assert_eq!(config.sessions.max_viewers, 2);
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[video]\nwidth = 641", "video.width"),
        ("[video]\nheight = 0", "video.height"),
        ("[video]\nfps = 0", "video.fps"),
        ("[video]\nbitrate_kbps = 1", "video.bitrate_kbps"),
        (
            "[video]\nkeyframe_interval_secs = -1.0",
            "video.keyframe_interval_secs",
        ),
        ("[video]\nsource = \"webcam\"", "video.source"),
        ("[audio]\nsource = \"\"", "audio.source"),
        ("[audio]\nchannels = 3", "audio.channels"),
        ("[audio]\nbitrate_kbps = 600", "audio.bitrate_kbps"),
        ("[mqtt]\nbroker = \"http://x\"", "mqtt.broker"),
        ("[mqtt]\nbroker = \"mqtt://x:99999\"", "mqtt.broker"),
        ("[mqtt]\nprefix = \"a/+\"", "mqtt.prefix"),
        ("[device]\nid = \"my cam\"", "device.id"),
        ("[sessions]\nmax_viewers = 0", "sessions.max_viewers"),
        ("[sessions]\ntimeout_secs = 0", "sessions.timeout_secs"),
        ("[ice]\nservers = [{urls = [\"http://x\"]}]", "ice.servers"),
        ("[ice]\nservers = [{urls = [\"turn:x\"]}]", "ice.servers"),
        (
            "[web]\nice_servers = [{urls = [\"turn:x\"]}]",
            "web.ice_servers",
        ),
        ("[web]\nice_servers = [{urls = []}]", "web.ice_servers"),
        ("[motion]\nsensitivity = 1.5", "motion.sensitivity"),
        ("[motion]\nmin_area = 0.0", "motion.min_area"),
        ("[motion]\nquiet_secs = 0", "motion.quiet_secs"),
        (
            "[motion]\nignore = [{ x = 0.8, y = 0.0, width = 0.5, height = 0.5 }]",
            "motion.ignore",
        ),
        ("[motion]\nignore = [{ x = 0.1 }]", "motion.ignore[0]"),
        (
            "[motion]\nenabled = true\n[video]\nh264_passthrough = true",
            "motion.enabled",
        ),
        ("[record]\nmode = \"motion\"", "record.mode"),
        ("[record]\nmode = \"sometimes\"", "record.mode"),
        (
            "[record]\nmode = \"continuous\"\npath = \"recordings\"",
            "record.path",
        ),
        (
            "[motion]\nenabled = true\n[record]\nmode = \"motion\"\n[video]\nkeyframe_interval_secs = 0.0",
            "video.keyframe_interval_secs",
        ),
        ("[record]\nsegment_secs = 5", "record.segment_secs"),
    ];
    for (text, key) in cases {
        let err = resolve(text, Overrides::default()).expect_err(text);
        assert_eq!(key_of(err), key, "{text}");
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn the_page_gets_its_own_ice_servers_tcp_turn_included() {
    let text = "[web]\nice_servers = [{urls = [\"turn:t.example:3478?transport=tcp\"], \
                username = \"u\", credential = \"c\"}]";
    let config = resolve(text, Overrides::default()).unwrap();
    let [server] = &config.web.ice_servers[..] else {
        panic!("{:?}", config.web.ice_servers);
    };
    assert_eq!(server.urls, ["turn:t.example:3478?transport=tcp"]);
    assert_eq!(server.credential.as_ref().map(|c| c.0.as_str()), Some("c"));
    assert!(
        config.ice.servers.is_empty(),
        "campeer's own list stays empty"
    );
}

#[test]
fn no_broker_means_the_embedded_one_on_loopback() {
    let config = resolve("", Overrides::default()).unwrap();
    let embedded = config.embedded_broker.expect("embedded broker");
    assert_eq!(embedded.listen, addr("127.0.0.1:1883"));
    assert_eq!(
        embedded.ws_listen,
        addr("127.0.0.1:0"),
        "internal: pages use /mqtt"
    );
    assert_eq!(config.web.listen, addr("127.0.0.1:8080"));
    assert!(!config.web.public);
    let external = resolve("[mqtt]\nbroker = \"mqtt://h\"", Overrides::default()).unwrap();
    assert!(external.embedded_broker.is_none());
}

#[test]
fn public_opens_every_listener_and_keeps_ports() {
    let flags = Overrides {
        public: Some(true),
        http_listen: Some("127.0.0.1:9000".into()),
        embedded_broker_username: Some("viewer".into()),
        embedded_broker_password: Some("secret".into()),
        ..Default::default()
    };
    let config = resolve("", flags).unwrap();
    assert_eq!(config.web.listen, addr("0.0.0.0:9000"));
    let embedded = config.embedded_broker.unwrap();
    assert_eq!(embedded.listen, addr("0.0.0.0:1883"));
    assert_eq!(
        embedded.ws_listen,
        addr("127.0.0.1:0"),
        "pages reach it through web.listen"
    );
}

#[test]
fn public_without_a_broker_password_must_be_asked_for() {
    let open = Overrides {
        public: Some(true),
        ..Default::default()
    };
    let err = resolve("", open).expect_err("an open public broker was accepted");
    assert_eq!(key_of(err), "web.public");
    let explicit = Overrides {
        public: Some(true),
        public_without_password: Some(true),
        ..Default::default()
    };
    assert!(resolve("", explicit).unwrap().web.public);
    let from_file = Overrides {
        public: Some(true),
        ..Default::default()
    };
    assert!(resolve("[web]\npublic_without_password = true", from_file).is_ok());
    let external = Overrides {
        public: Some(true),
        broker: vec!["mqtt://broker.example".into()],
        ..Default::default()
    };
    assert!(
        resolve("", external).is_ok(),
        "its own broker fences itself"
    );
}

#[test]
fn web_and_broker_values_are_validated() {
    for (text, key) in [
        ("[web]\nlisten = \"localhost\"", "web.listen"),
        ("[web]\nbroker_ws_url = \"http://x\"", "web.broker_ws_url"),
        ("[broker]\nws_listen = \"1.2.3.4\"", "broker.ws_listen"),
        ("[broker]\nusername = \"u\"", "broker.username"),
    ] {
        let err = resolve(text, Overrides::default()).expect_err(text);
        assert_eq!(key_of(err), key, "{text}");
    }
}

#[test]
fn audio_sources_parse() {
    let source = |text: &str| {
        resolve(&format!("[audio]\nsource = {text:?}"), Overrides::default())
            .unwrap()
            .audio
            .source
    };
    assert_eq!(source("auto"), AudioSourceKind::Auto);
    assert_eq!(source("none"), AudioSourceKind::None);
    assert_eq!(source("test"), AudioSourceKind::TestTone);
    assert_eq!(
        source("plughw:CARD=Device"),
        AudioSourceKind::Alsa("plughw:CARD=Device".into())
    );
    let flags = Overrides {
        audio_source: Some("test".into()),
        audio_channels: Some(2),
        ..Default::default()
    };
    let audio = resolve("[audio]\nsource = \"default\"", flags)
        .unwrap()
        .audio;
    assert_eq!(audio.source, AudioSourceKind::TestTone, "the flag wins");
    assert_eq!(audio.channels, 2);
}

#[test]
fn more_cameras_take_what_they_leave_out_from_the_first() {
    let config = resolve(
        "[device]\nid = \"porch\"\n[video]\nsource = \"/dev/video0\"\nwidth = 1280\n\
         height = 720\nfps = 25\n\
         [[cameras]]\nid = \"garden\"\nsource = \"rpicam:1\"\nwidth = 640\nheight = 480\n\
         [[cameras]]\nid = \"bench\"\nsource = \"test\"\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.device_id.as_str(), "porch");
    assert_eq!(config.cameras.len(), 2);
    let garden = &config.cameras[0];
    assert_eq!(garden.device_id.as_str(), "garden");
    assert_eq!(garden.video.source, SourceKind::CameraModule(1));
    assert_eq!((garden.video.width, garden.video.height), (640, 480));
    assert_eq!(garden.video.fps, 25, "inherited");
    let bench = &config.cameras[1];
    assert_eq!((bench.video.width, bench.video.height), (1280, 720));
    // One camera: nothing changes.
    assert!(
        resolve("", Overrides::default())
            .unwrap()
            .cameras
            .is_empty()
    );
}

#[test]
fn more_cameras_need_ids_and_sources_of_their_own() {
    let err = |text: &str| resolve(text, Overrides::default()).unwrap_err().to_string();
    let base = "[device]\nid = \"porch\"\n[video]\nsource = \"/dev/video0\"\n";
    for (extra, key) in [
        ("[[cameras]]\nsource = \"test\"", "cameras.id"),
        (
            "[[cameras]]\nid = \"porch\"\nsource = \"test\"",
            "cameras.id",
        ),
        ("[[cameras]]\nid = \"a/b\"\nsource = \"test\"", "cameras.id"),
        ("[[cameras]]\nid = \"garden\"", "cameras.source"),
        (
            "[[cameras]]\nid = \"a\"\nsource = \"rpicam\"\n[[cameras]]\nid = \"b\"\nsource = \"rpicam:0\"",
            "cameras.source",
        ),
        (
            "[[cameras]]\nid = \"a\"\nsource = \"test\"\nwidth = 7",
            "cameras",
        ),
    ] {
        let message = err(&format!("{base}{extra}"));
        assert!(message.contains(key), "{extra:?}: {message}");
    }
    let many: String = (0..=MAX_EXTRA_CAMERAS)
        .map(|i| format!("[[cameras]]\nid = \"c{i}\"\nsource = \"test\"\n"))
        .collect();
    assert!(err(&format!("{base}{many}")).contains("at most"));
    let typo = FileConfig::parse("[[cameras]]\nid = \"a\"\nheigth = 7")
        .unwrap_err()
        .to_string();
    assert!(typo.contains("heigth"), "{typo}");
}

#[test]
fn sources_parse() {
    let source = |text: &str| {
        resolve(&format!("[video]\nsource = {text:?}"), Overrides::default())
            .unwrap()
            .video
            .source
    };
    assert_eq!(source("test"), SourceKind::TestPattern);
    assert_eq!(source("auto"), SourceKind::Auto);
    assert_eq!(
        source("/dev/video2"),
        SourceKind::Camera("/dev/video2".into())
    );
    let encoder = |text: &str| {
        resolve(
            &format!("[video]\nencoder = {text:?}"),
            Overrides::default(),
        )
        .map(|c| c.video.encoder)
        .map_err(|e| e.to_string())
    };
    assert_eq!(encoder("auto").unwrap(), EncoderChoice::Auto);
    assert_eq!(encoder("openh264").unwrap(), EncoderChoice::OpenH264);
    assert_eq!(encoder("v4l2m2m").unwrap(), EncoderChoice::V4l2M2m(None));
    assert_eq!(
        encoder("v4l2m2m:/dev/video11").unwrap(),
        EncoderChoice::V4l2M2m(Some("/dev/video11".into()))
    );
    for bad in ["x264", "v4l2m2m:", "v4l2m2m:video11"] {
        assert!(encoder(bad).unwrap_err().contains("video.encoder"), "{bad}");
    }
    assert_eq!(source("rpicam"), SourceKind::CameraModule(0));
    assert_eq!(source("rpicam:1"), SourceKind::CameraModule(1));
    for bad in ["rpicam:", "rpicam:x", "rpicam:-1", "video0"] {
        let err = resolve(&format!("[video]\nsource = {bad:?}"), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("video.source"), "{bad}: {err}");
    }
}

#[test]
fn unknown_keys_are_rejected() {
    let err = FileConfig::parse("[video]\nwidht = 320").unwrap_err();
    assert_eq!(key_of(err), "video.widht");
}

#[test]
fn broker_urls_parse() {
    assert_eq!(
        BrokerAddress::parse("mqtt://broker.local").unwrap(),
        BrokerAddress {
            host: "broker.local".into(),
            port: 1883,
            tls: false
        }
    );
    assert_eq!(
        BrokerAddress::parse("tcp://[::1]:1884").unwrap(),
        BrokerAddress {
            host: "::1".into(),
            port: 1884,
            tls: false
        }
    );
    assert!(BrokerAddress::parse("mqtt://user:pw@host").is_err());
    assert_eq!(
        BrokerAddress::parse("mqtts://broker.example").unwrap(),
        BrokerAddress {
            host: "broker.example".into(),
            port: 8883,
            tls: true
        }
    );
    assert!(BrokerAddress::parse("ws://host").is_err());
    assert!(BrokerAddress::parse("mqtt://").is_err());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let flags = Overrides {
        mqtt_password: Some("hunter2".into()),
        ..Default::default()
    };
    let config = resolve("", flags).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn host_name_becomes_a_valid_device_id() {
    let id = default_device_id();
    assert!(Segment::parse(id.as_str()).is_ok());
}

/// Parses a command line as campeer's flags.
fn flags(args: &[&str]) -> Overrides {
    let command = Overrides::augment_args(clap::Command::new("campeer"));
    let matches = command
        .try_get_matches_from(std::iter::once("campeer").chain(args.iter().copied()))
        .unwrap();
    Overrides::from_arg_matches(&matches).unwrap()
}

#[test]
fn a_flag_turns_off_what_the_file_turns_on() {
    let file = "[web]\npublic = true\npublic_without_password = true\n\
                [ice]\nloopback_only = true\n[video]\nh264_passthrough = true";
    let on = resolve(file, flags(&[])).unwrap();
    assert!(on.web.public && on.ice.loopback_only && on.video.h264_passthrough);
    let off = resolve(
        file,
        flags(&[
            "--public=false",
            "--ice-loopback-only=no",
            "--h264-passthrough=0",
        ]),
    )
    .unwrap();
    assert!(!off.web.public, "--public=false");
    assert!(!off.ice.loopback_only);
    assert!(!off.video.h264_passthrough);
    assert_eq!(
        off.web.listen,
        addr("127.0.0.1:8080"),
        "not opened to the network"
    );
    let bare = resolve("", flags(&["--public", "--public-without-password"])).unwrap();
    assert!(bare.web.public, "a bare --public still turns it on");
}

#[test]
fn a_cluster_s_brokers_are_listed_in_the_file_or_the_flags() {
    let expected = |hosts: &[&str]| -> Vec<BrokerAddress> {
        hosts
            .iter()
            .map(|host| BrokerAddress {
                host: (*host).into(),
                port: 1883,
                tls: false,
            })
            .collect()
    };
    let listed = resolve(
        "[mqtt]\nbroker = [\"mqtt://n1\", \"mqtt://n2\", \"mqtt://n3\"]",
        flags(&[]),
    )
    .unwrap();
    assert_eq!(listed.mqtt.brokers, expected(&["n1", "n2", "n3"]));
    assert!(listed.embedded_broker.is_none());
    let one = resolve("[mqtt]\nbroker = \"mqtt://n1\"", flags(&[])).unwrap();
    assert_eq!(one.mqtt.brokers, expected(&["n1"]));
    let comma = resolve("", flags(&["--broker", "mqtt://n1,mqtt://n2"])).unwrap();
    assert_eq!(comma.mqtt.brokers, expected(&["n1", "n2"]));
    let repeated = resolve(
        "",
        flags(&["--broker", "mqtt://n1", "--broker", "mqtt://n2"]),
    )
    .unwrap();
    assert_eq!(repeated.mqtt.brokers, expected(&["n1", "n2"]));
    // The flags replace the file's list; they do not add to it.
    let over = resolve(
        "[mqtt]\nbroker = [\"mqtt://a\", \"mqtt://b\"]",
        flags(&["--broker", "mqtt://n1"]),
    )
    .unwrap();
    assert_eq!(over.mqtt.brokers, expected(&["n1"]));
    for (file, why) in [
        ("[mqtt]\nbroker = [\"mqtt://n1\", \"http://n2\"]", "mqtt://"),
        ("[mqtt]\nbroker = 5", "a text or a list"),
    ] {
        let error = resolve(file, flags(&[])).unwrap_err().to_string();
        assert!(
            error.contains("mqtt.broker") && error.contains(why),
            "{error}"
        );
    }
    let many: Vec<String> = (0..=MAX_BROKERS)
        .map(|i| format!("\"mqtt://n{i}\""))
        .collect();
    let error = resolve(
        &format!("[mqtt]\nbroker = [{}]", many.join(",")),
        flags(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("at most 16"), "{error}");
}

#[test]
fn every_setting_the_file_takes_comes_from_flags_the_same_way() {
    let file = "[mqtt]\nbroker = \"mqtts://a\"\nkeep_alive_secs = 30\nca_file = \"/f/ca.pem\"\n\
                [sessions]\nidle_grace_secs = 3\n[web]\nice_servers = [{urls = [\"stun:f\"]}]";
    let from_file = resolve(file, flags(&[])).unwrap();
    let from_flags = resolve(
        "",
        flags(&[
            "--broker",
            "mqtts://a",
            "--mqtt-keep-alive",
            "30",
            "--mqtt-ca-file",
            "/f/ca.pem",
            "--idle-grace",
            "3",
            "--page-ice-server",
            "stun:f",
        ]),
    )
    .unwrap();
    assert_eq!(from_file.mqtt.keep_alive(), from_flags.mqtt.keep_alive());
    assert_eq!(from_file.mqtt.ca_file, from_flags.mqtt.ca_file);
    assert_eq!(from_file.mqtt.brokers, from_flags.mqtt.brokers);
    assert_eq!(from_file.sessions, from_flags.sessions);
    assert_eq!(from_file.web.ice_servers, from_flags.web.ice_servers);
    let servers = resolve("", flags(&["--ice-server", "stun:a,stun:b"]))
        .unwrap()
        .ice
        .servers;
    assert_eq!(servers.len(), 2, "{servers:?}");
}

#[test]
fn every_flag_names_a_key_the_file_takes() {
    let command = Overrides::augment_args(clap::Command::new("campeer"));
    let mut keys = 0;
    for arg in command.get_arguments() {
        let key = arg.get_id().as_str();
        let (section, field) = key.split_once('.').expect("a flag's id is its file key");
        keys += 1;
        // Any value: a type the key does not take is fine here, a key the file lacks is not.
        let text = format!("[{section}]\n{field} = \"0\"");
        if let Err(error) = FileConfig::parse(&text) {
            let error = error.to_string();
            assert!(!error.contains("unknown field"), "{key}: {error}");
        }
    }
    assert!(keys > 30, "{keys} flags");
}

#[test]
fn the_configuration_reference_shows_the_schema() {
    let path = repo_file("docs/configuration.md");
    let document = std::fs::read_to_string(&path).unwrap();
    let rendered = reference::settings_table();
    let (before, rest) = document
        .split_once(reference::TABLE_START)
        .expect("the start marker");
    let (current, after) = rest
        .split_once(reference::TABLE_END)
        .expect("the end marker");
    let fresh = format!("\n{rendered}");
    if current != fresh {
        if std::env::var_os("CAMPEER_BLESS").is_some() {
            let updated = format!(
                "{before}{}{fresh}{}{after}",
                reference::TABLE_START,
                reference::TABLE_END
            );
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/configuration.md's settings table is not what the schema says; \
                 CAMPEER_BLESS=1 cargo test --lib config rewrites it. It should read:\n{rendered}"
            );
        }
    }
    assert!(rendered.contains("| `video.width` | `--width` | `CAMPEER_WIDTH` | `640` |"));
}

#[test]
fn the_packaged_example_shows_the_defaults() {
    let text = std::fs::read_to_string(repo_file("packaging/campeer.toml")).unwrap();
    let wrong = reference::example_lines_off_their_default(&text);
    assert!(wrong.is_empty(), "packaging/campeer.toml: {wrong:#?}");
    assert!(
        !reference::example_lines_off_their_default("[video]\n# width = 320").is_empty(),
        "a wrong default is noticed"
    );
    // Uncommented, the example is a valid file.
    let is_setting = |line: &&str| {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    };
    let uncommented: String = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix("# ")
                .filter(is_setting)
                .or(line.starts_with('[').then_some(line))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    FileConfig::parse(&uncommented).unwrap();
}

#[test]
fn help_shows_each_default_once_written() {
    let command =
        reference::with_defaults_in_help(Overrides::augment_args(clap::Command::new("campeer")));
    let help = |id: &str| {
        command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .and_then(|arg| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    assert!(
        help("video.width").ends_with("[default: 640]"),
        "{}",
        help("video.width")
    );
    assert!(help("web.listen").ends_with("[default: 127.0.0.1:8080]"));
    assert!(
        !help("mqtt.broker").contains("[default"),
        "no default, none shown"
    );
}

pub(super) fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn a_bad_file_names_itself_once_and_the_key() {
    let dir = std::env::temp_dir().join(format!("campeer-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("campeer.toml");
    for (text, wanted) in [
        ("[video]\nwidth = \"x\"", "video.width"),
        ("[video", "line 1"),
    ] {
        std::fs::write(&path, text).unwrap();
        let message = FileConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains(wanted), "{message}");
        assert_eq!(message.matches("config file").count(), 1, "{message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
