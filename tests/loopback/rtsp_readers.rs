//! RTSP as NVRs and players read it: Debian's ffmpeg and GStreamer's rtspsrc, over TCP and UDP,
//! behind Digest credentials, decode campeer's stream with the timestamp squares readable;
//! eight readers share the one encode and one more is turned away; a reader that stops reading
//! is dropped while the others play on; junk, huge headers, endless SETUPs and a thousand
//! connections change nothing for a reader playing meanwhile; a camera's own H.264 is served
//! as it comes.

use campeer::config::Overrides;
use common::fakecam::{bars_camera, mount_or_skip};
use common::rtsp::{Client, RtspReader, median_latency_ms, probe, request, timestamps_readable};
use common::whep::http;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: &str = "nvr";
const PASSWORD: &str = "rtsp-s3cret";

fn rtsp_overrides(broker: &Broker, device: &str) -> Overrides {
    Overrides {
        rtsp_listen: Some("127.0.0.1:0".into()),
        rtsp_username: Some(USER.into()),
        rtsp_password: Some(PASSWORD.into()),
        ..overrides(broker, device)
    }
}

fn url(device: &campeer::device::DeviceHandle, name: &str) -> String {
    let addr = device.rtsp_addr().expect("campeer serves RTSP");
    format!("rtsp://{USER}:{PASSWORD}@{addr}/{name}")
}

/// `campeer_rtsp_readers` for `name`, from a scrape of /metrics.
async fn readers_in_metrics(device: &campeer::device::DeviceHandle, name: &str) -> Option<u64> {
    let reply = http(device.http_addr().port(), "GET", "/metrics", &[], "").await;
    let wanted = format!("campeer_rtsp_readers{{device=\"{name}\"}} ");
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
}

async fn wait_for_readers(device: &campeer::device::DeviceHandle, name: &str, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if readers_in_metrics(device, name).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The longest wait between two pictures a reader decoded, in milliseconds.
fn longest_gap_ms(reader: &RtspReader, from: Instant) -> u128 {
    let frames: Vec<_> = reader
        .frames()
        .into_iter()
        .filter(|f| f.at >= from)
        .collect();
    frames
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .max()
        .unwrap_or(u128::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ffmpeg_and_gstreamer_read_over_tcp_and_udp_behind_digest() {
    if !common::rtsp::available() {
        return;
    }
    let _load = common::load::shared();
    let broker = Broker::start();
    let name = "cam-rtsp";
    let device = start_device(Overrides {
        audio_source: Some("test".into()),
        ..rtsp_overrides(&broker, name)
    })
    .await;
    let addr = device.rtsp_addr().expect("campeer serves RTSP");

    // Without credentials and with wrong ones: 401, and the camera stays off.
    let anonymous = probe(&format!("rtsp://{addr}/{name}"));
    assert!(
        anonymous.as_ref().is_err_and(|e| e.contains("401")),
        "{anonymous:?}"
    );
    let wrong = probe(&format!("rtsp://{USER}:nope@{addr}/{name}"));
    assert!(
        wrong.as_ref().is_err_and(|e| e.contains("401")),
        "{wrong:?}"
    );
    assert_eq!(
        device.hub_stats().pipeline_starts,
        0,
        "a reader without the password started the camera"
    );
    let unknown = probe(&format!("rtsp://{USER}:{PASSWORD}@{addr}/no-such-camera"));
    assert!(
        unknown.as_ref().is_err_and(|e| e.contains("404")),
        "{unknown:?}"
    );
    assert_eq!(
        probe(&url(&device, name)),
        Ok(vec!["h264".to_owned(), "opus".to_owned()])
    );

    // ffmpeg over TCP, with the camera running already (the probe started it).
    let ffmpeg_tcp =
        RtspReader::start(Client::Ffmpeg { udp: false }, &url(&device, name), 640, 480);
    assert!(
        ffmpeg_tcp
            .wait_for_frames(30, Duration::from_secs(20))
            .await,
        "ffmpeg over TCP decoded {} pictures: {}",
        ffmpeg_tcp.frames().len(),
        ffmpeg_tcp.said()
    );
    let frames = ffmpeg_tcp.frames();
    let first = frames[0].at.duration_since(ffmpeg_tcp.started);
    eprintln!(
        "RTSP ffmpeg/TCP: first picture {} ms after start, glass-to-glass median {:?} ms",
        first.as_millis(),
        median_latency_ms(&frames)
    );
    assert!(timestamps_readable(&frames), "unreadable: {frames:?}");

    // The three others at once: ffmpeg over UDP, rtspsrc over TCP and UDP.
    let others = [
        Client::Ffmpeg { udp: true },
        Client::Gstreamer { udp: false },
        Client::Gstreamer { udp: true },
    ]
    .map(|client| {
        (
            client,
            RtspReader::start(client, &url(&device, name), 640, 480),
        )
    });
    for (client, reader) in &others {
        assert!(
            reader.wait_for_frames(30, Duration::from_secs(20)).await,
            "{client:?} decoded {} pictures: {}",
            reader.frames().len(),
            reader.said()
        );
        let frames = reader.frames();
        assert!(timestamps_readable(&frames), "{client:?}: {frames:?}");
        eprintln!(
            "RTSP {client:?}: first picture {} ms after start, glass-to-glass median {:?} ms",
            frames[0].at.duration_since(reader.started).as_millis(),
            median_latency_ms(&frames)
        );
    }
    let stats = device.hub_stats();
    assert_eq!(stats.pipeline_starts, 1, "one encode serves every reader");
    assert_eq!(readers_in_metrics(&device, name).await, Some(4));
    assert!(device.audio_stats().is_some_and(|audio| audio.packets > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_readers_share_one_encode_and_a_ninth_is_turned_away() {
    if !common::rtsp::available() {
        return;
    }
    let _load = common::load::shared();
    let broker = Broker::start();
    let name = "cam-rtsp-8";
    let device = start_device(Overrides {
        rtsp_max_readers: Some(8),
        ..rtsp_overrides(&broker, name)
    })
    .await;
    let readers: Vec<RtspReader> = (0..8)
        .map(|i| {
            let client = Client::Ffmpeg { udp: i % 2 == 1 };
            RtspReader::start(client, &url(&device, name), 640, 480)
        })
        .collect();
    for (i, reader) in readers.iter().enumerate() {
        assert!(
            reader.wait_for_frames(60, Duration::from_secs(30)).await,
            "reader {i} decoded {} pictures: {}",
            reader.frames().len(),
            reader.said()
        );
        assert!(timestamps_readable(&reader.frames()), "reader {i}");
    }
    assert!(wait_for_readers(&device, name, 8).await);
    let ninth = probe(&url(&device, name));
    assert!(
        ninth.as_ref().is_err_and(|e| e.contains("503")),
        "{ninth:?}"
    );
    let stats = device.hub_stats();
    assert_eq!(stats.pipeline_starts, 1, "eight readers, one encode");
    assert_eq!(stats.source_opens, 1);

    drop(readers);
    assert!(wait_for_readers(&device, name, 0).await, "readers linger");
    // Their places are free again.
    assert_eq!(probe(&url(&device, name)), Ok(vec!["h264".to_owned()]));
}

/// What a reader says up to PLAY over TCP, by hand; the answers' status lines.
async fn play_by_hand(stream: &mut TcpStream, base: &str, auth: &str) -> Vec<String> {
    let mut statuses = Vec::new();
    let steps = [
        format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 2\r\n{auth}\r\n"),
        format!(
            "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n{auth}Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    ];
    let mut session = String::new();
    for step in steps {
        let answer = request(stream, &step, Duration::from_secs(10))
            .await
            .unwrap_or_default();
        if let Some(line) = answer.lines().find(|l| l.starts_with("Session:")) {
            session = line
                .trim_start_matches("Session:")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
        }
        statuses.push(answer.lines().next().unwrap_or("").to_owned());
    }
    let play = format!("PLAY {base} RTSP/1.0\r\nCSeq: 4\r\n{auth}Session: {session}\r\n\r\n");
    let answer = request(stream, &play, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    statuses.push(answer.lines().next().unwrap_or("").to_owned());
    statuses
}

/// A loopback device without credentials (so that requests written by hand need none), its
/// RTSP address and URL, and an ffmpeg reader playing it.
async fn device_with_a_reader(
    broker: &Broker,
    name: &str,
) -> (
    campeer::device::DeviceHandle,
    std::net::SocketAddr,
    String,
    RtspReader,
) {
    let device = start_device(Overrides {
        rtsp_listen: Some("127.0.0.1:0".into()),
        ..overrides(broker, name)
    })
    .await;
    let addr = device.rtsp_addr().expect("RTSP");
    let base = format!("rtsp://{addr}/{name}");
    let player = RtspReader::start(Client::Ffmpeg { udp: false }, &base, 640, 480);
    assert!(player.wait_for_frames(30, Duration::from_secs(20)).await);
    (device, addr, base, player)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_stops_reading_is_dropped_and_the_others_play_on() {
    if !common::rtsp::available() {
        return;
    }
    let _load = common::load::shared();
    let broker = Broker::start();
    let name = "cam-rtsp-stall";
    let (device, addr, base, player) = device_with_a_reader(&broker, name).await;

    // A reader that plays and then reads nothing: a small receive window, never emptied.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let statuses = play_by_hand(&mut stalled, &base, "").await;
    assert!(statuses.iter().all(|s| s.contains("200")), "{statuses:?}");
    assert!(wait_for_readers(&device, name, 2).await);
    let stalled_at = Instant::now();
    assert!(
        wait_for_readers(&device, name, 1).await,
        "the reader that stopped reading was kept"
    );
    eprintln!(
        "RTSP: a reader that stopped reading was dropped after {} ms",
        stalled_at.elapsed().as_millis()
    );
    let gap = longest_gap_ms(&player, stalled_at);
    assert!(
        gap < 1_000,
        "the player froze for {gap} ms while the other reader stalled"
    );
    // Its connection is closed: what the kernel kept is read, then the end.
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the stalled connection is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_floods_and_endless_setups_change_nothing_for_a_reader() {
    if !common::rtsp::available() {
        return;
    }
    let _load = common::load::shared();
    let broker = Broker::start();
    let name = "cam-rtsp-junk";
    let (device, addr, base, player) = device_with_a_reader(&broker, name).await;
    let since = Instant::now();

    // Junk (a TLS hello): the connection is closed.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "junk was answered or kept: {read:?}"
    );

    // Endless headers: refused once 16 KiB have come, long before these end.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    let mut text = format!("OPTIONS {base} RTSP/1.0\r\nCSeq: 1\r\n");
    let header = format!("X-Junk: {}\r\n", "a".repeat(100));
    let mut written = 0;
    let refused = loop {
        if written > 4 * 1024 * 1024 {
            break false;
        }
        text.push_str(&header);
        if huge.write_all(text.as_bytes()).await.is_err() {
            break true;
        }
        written += text.len();
        text.clear();
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), huge.read(&mut buffer)).await
        {
            break true;
        }
    };
    assert!(refused, "{written} bytes of headers were taken");

    // Endless SETUPs on one connection: each answered, nothing piles up, and it still works.
    let mut setups = TcpStream::connect(addr).await.unwrap();
    let mut last = String::new();
    for cseq in 1..=300 {
        let setup = format!(
            "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: {cseq}\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        );
        last = request(&mut setups, &setup, Duration::from_secs(10))
            .await
            .unwrap_or_default();
        if !last.starts_with("RTSP/1.0 200") {
            break;
        }
    }
    assert!(last.starts_with("RTSP/1.0 200"), "{last}");
    let options = request(
        &mut setups,
        &format!("OPTIONS {base} RTSP/1.0\r\nCSeq: 301\r\n\r\n"),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_default();
    assert!(options.starts_with("RTSP/1.0 200"), "{options}");
    drop(setups);

    // A thousand connections at once: most are turned away; the player plays on.
    let mut flood = Vec::new();
    for _ in 0..1000 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            flood.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gap = longest_gap_ms(&player, since);
    assert!(gap < 1_000, "the player froze for {gap} ms");
    drop(flood);
    // Once they are gone a new reader is served again.
    let served = wait_for(Duration::from_secs(10), || {
        probe(&base).is_ok_and(|streams| streams == ["h264"])
    })
    .await;
    assert!(served, "no reader is served after the flood");
    assert_eq!(device.hub_stats().pipeline_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cameras_own_h264_is_served_as_it_comes() {
    if !common::rtsp::available() {
        return;
    }
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV", b"H264"])) else {
        return;
    };
    let broker = Broker::start();
    let name = "cam-rtsp-h264";
    let device = start_device(Overrides {
        source: Some(camera.path().display().to_string()),
        h264_passthrough: Some(true),
        keyframe_interval: Some(0.0),
        rtsp_listen: Some("127.0.0.1:0".into()),
        ..overrides(&broker, name)
    })
    .await;
    let addr = device.rtsp_addr().expect("RTSP");
    let base = format!("rtsp://{addr}/{name}");
    // The camera's keyframes come 10 s apart: the one each PLAY asks for comes at once.
    let reader = RtspReader::start(Client::Ffmpeg { udp: false }, &base, 640, 480);
    assert!(
        reader.wait_for_frames(20, Duration::from_secs(8)).await,
        "decoded {} pictures of the camera's own H.264: {}",
        reader.frames().len(),
        reader.said()
    );
    let stats = device.hub_stats();
    assert!(stats.frames_passed_through > 0);
    assert_eq!(
        stats.frames_passed_through, stats.frames_encoded,
        "every frame came from the camera's encoder"
    );
}
