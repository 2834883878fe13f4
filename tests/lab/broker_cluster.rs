//! A fleet on a RabbitMQ cluster (Debian's 3.10 with its MQTT plugin, MQTT 3.1.1 only): campeer
//! is given every node and connects to the first; a viewer connected to another node learns
//! that campeer is online (RabbitMQ keeps retained messages per node, so from campeer's
//! periodic status) and watches; the first node is killed, campeer moves to the next, and a
//! viewer there watches again.
//!
//! Three nodes, not two: the MQTT plugin keeps its client ids in a Raft group that needs a
//! majority of the nodes (RabbitMQ's maintainers in rabbitmq/rabbitmq-mqtt#221), which two
//! nodes lose when one stops; three keep it.

use common::*;
use serde_json::Value;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn seconds(lines: &[Value], key: &str) -> Option<f64> {
    lines.iter().find_map(|line| line[key].as_f64())
}

#[test]
fn a_fleet_moves_to_another_rabbitmq_node_when_its_node_dies() {
    let _load = common::load::shared();
    let Some(python) = common::aiortc::lab_and_python() else {
        return;
    };
    if !common::rabbitmq::available() {
        return;
    }
    let lab = common::network::Lab::new();
    let link = lab.link();
    let mut cluster = common::rabbitmq::RabbitMq::cluster_in(&lab.campeer_ns, 3);
    let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.port).collect();
    let brokers = ports
        .iter()
        .map(|port| format!("mqtt://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let (daemon, log_path) =
        DaemonProcess::on_brokers_in_namespace(&lab.campeer_ns, &brokers, "fleet");
    let read_log = || std::fs::read_to_string(log_path.path()).unwrap_or_default();
    let second = ports[1];

    // Before: campeer on the first node, the viewer on the second.
    let before = common::aiortc::watch_over_lab(
        &python,
        link,
        second,
        "fleet",
        "aio-before",
        &["--seconds", "6", "--wait-online", "30"],
    );
    // campeer's status is retained on the first node only: the viewer learns it from the
    // status campeer publishes again every 10 s.
    eprintln!(
        "a viewer on another node saw campeer online after {:.2} s",
        seconds(&before, "online_after").unwrap_or(f64::NAN)
    );
    let frames = before
        .last()
        .and_then(|l| l["frames"].as_u64())
        .unwrap_or(0);
    assert!(
        frames >= 60,
        "a viewer on another node decoded {frames} frames: {before:?}\n{}",
        read_log()
    );
    assert!(
        read_log().contains(&format!(
            "connected to MQTT broker mqtt://127.0.0.1:{}",
            ports[0]
        )),
        "campeer did not start on the first node: {}",
        read_log()
    );

    // The first node dies; a new viewer on the second waits for campeer there.
    cluster.nodes[0].kill();
    let killed = Instant::now();
    let killed_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let after = common::aiortc::watch_over_lab(
        &python,
        link,
        second,
        "fleet",
        "aio-after",
        &["--seconds", "6", "--wait-online", "60"],
    );
    let started_after = killed.elapsed();
    let frames = after.last().and_then(|l| l["frames"].as_u64()).unwrap_or(0);
    assert!(
        frames >= 60,
        "after the node died, a viewer decoded {frames} frames: {after:?}\n{}",
        read_log()
    );
    let moved = read_log()
        .lines()
        .filter(|line| line.contains("connected to MQTT broker"))
        .count();
    assert!(moved >= 2, "campeer never connected again: {}", read_log());
    let watching_again = seconds(&after, "first_frame_unix").map(|at| at - killed_unix);
    assert!(
        watching_again.is_some_and(|s| s > 0.0 && s < 60.0),
        "no first frame after the node died: {after:?}"
    );
    eprintln!(
        "RabbitMQ node killed: a new viewer, started at once, decoded its first frame {:.2} s \
         after (aiortc's own start of {:.2} s included; the viewer's run took {started_after:?})",
        watching_again.unwrap_or(f64::NAN),
        watching_again.unwrap_or(f64::NAN) - seconds(&after, "first_frame_after").unwrap_or(0.0),
    );
    for line in read_log()
        .lines()
        .filter(|line| line.contains("MQTT broker"))
    {
        eprintln!("campeer: {line}");
    }
    drop(daemon);
}
