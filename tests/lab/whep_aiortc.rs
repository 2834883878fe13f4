//! A WHEP player on another WebRTC stack (aiortc) watches through campeer's WHEP endpoint, as
//! mediamtx, go2rtc or GStreamer's whepsrc would: the offer POSTed gets `201 Created` with the
//! answer, `Location`, `ETag`, `Accept-Patch`; its candidates trickled in a PATCH connect it;
//! it plays; a CORS preflight is answered and the ICE servers come as `Link` headers; with
//! the device full, another player gets `503` with `Retry-After`; a wrong
//! token gets `401`; DELETE ends the session and frees its place, and a second DELETE finds
//! nothing.

use common::aiortc::{WHEP_PLAYER, lab_and_python};
use common::network::{Lab, LabCampeer, wait_for_tcp};
use common::stacks::run_script_in;
use serde_json::Value;

fn step<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line.get(key).is_some())
        .unwrap_or_else(|| panic!("no {key:?} step: {lines:?}"))
}

#[test]
fn aiortc_watches_through_whep() {
    let _load = common::load::shared();
    let Some(python) = lab_and_python() else {
        return;
    };
    let lab = Lab::new();
    let link = lab.link();
    let listen = format!("{}:{}", link.campeer_ip, common::free_port());
    // ICE servers for players, handed out in Link headers (campeer never contacts them).
    let config = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(
        config.path(),
        "[web]\nice_servers = [{urls = [\"stun:10.77.0.9:3478\"]}, \
         {urls = [\"turn:10.77.0.9:3478\"], username = \"u\", credential = \"c\"}]\n",
    )
    .expect("write the configuration");
    let config_path = config.path().display().to_string();
    let _campeer = LabCampeer::start(
        &lab,
        "porch",
        &[
            "--config",
            &config_path,
            "--http-listen",
            &listen,
            "--max-viewers",
            "1",
            "--whep-token",
            "s3cret",
        ],
    );
    assert!(
        wait_for_tcp(&lab.campeer_ns, listen.clone(), 250),
        "campeer's HTTP server did not come up"
    );
    let url = format!("http://{listen}/whep/porch");
    let play = |extra: &[&str]| {
        let mut args = vec!["--url", url.as_str()];
        args.extend_from_slice(extra);
        run_script_in(&link.viewer_ns, &python, WHEP_PLAYER, &args)
    };

    let no_token = play(&["--seconds", "1"]);
    assert_eq!(step(&no_token, "post")["post"], 401, "{no_token:?}");

    let ns = link.viewer_ns.clone();
    let (python_a, url_a) = (python.clone(), url.clone());
    let first = std::thread::spawn(move || {
        run_script_in(
            &ns,
            &python_a,
            WHEP_PLAYER,
            &[
                "--url",
                &url_a,
                "--token",
                "s3cret",
                "--trickle",
                "--seconds",
                "12",
            ],
        )
    });
    std::thread::sleep(std::time::Duration::from_secs(5));
    let busy = play(&["--token", "s3cret", "--seconds", "1"]);
    let first = first.join().expect("the first player");

    let options = step(&first, "options");
    assert_eq!(options["options"], 204, "{options}");
    assert_eq!(options["allow_origin"], "*");
    assert_eq!(options["allow_methods"], "POST, OPTIONS");
    assert!(
        options["allow_headers"]
            .as_str()
            .is_some_and(|h| h.contains("Authorization"))
    );
    assert_eq!(options["accept_post"], "application/sdp");
    let post = step(&first, "post");
    assert_eq!(post["post"], 201, "{first:?}");
    let location = post["location"].as_str().unwrap_or_default();
    assert!(location.starts_with("/whep/porch/whep-"), "{post}");
    assert!(
        post["etag"].as_str().is_some_and(|e| e.starts_with('"')),
        "{post}"
    );
    assert_eq!(post["accept_patch"], "application/trickle-ice-sdpfrag");
    assert_eq!(
        post["links"],
        serde_json::json!([
            "<stun:10.77.0.9:3478>; rel=\"ice-server\"",
            "<turn:10.77.0.9:3478>; rel=\"ice-server\"; username=\"u\"; credential=\"c\"; \
             credential-type=\"password\""
        ]),
        "{post}"
    );
    assert_eq!(step(&first, "patch")["patch"], 204, "{first:?}");
    let frames = step(&first, "done")["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 200,
        "the WHEP player decoded {frames} frames: {first:?}"
    );
    assert_eq!(step(&first, "delete")["delete"], 200);
    assert_eq!(step(&first, "delete_again")["delete_again"], 404);

    let refused = step(&busy, "post");
    assert_eq!(refused["post"], 503, "{busy:?}");
    assert_eq!(refused["retry_after"], "10", "{busy:?}");

    // The DELETE freed the one place.
    let after = play(&["--token", "s3cret", "--seconds", "3"]);
    assert_eq!(step(&after, "post")["post"], 201, "{after:?}");
    assert!(
        step(&after, "done")["frames"].as_u64().unwrap_or(0) >= 30,
        "{after:?}"
    );
}
