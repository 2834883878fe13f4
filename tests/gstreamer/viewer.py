"""A campeer viewer built on GStreamer's webrtcbin (Debian's gstreamer1.0-plugins-bad, with
libnice), for the Rust tests: a strict SDP parser on a WebRTC stack of its own. It joins over
MQTT (a recvonly offer sent once gathering is complete, its candidates in it; campeer's
candidates applied as they come), decodes what arrives
(decodebin: openh264dec, vp8dec, opusdec), and prints one JSON line a second
({"frames": n, "audio_frames": n, "ice": state}), then {"done": true, ...}. The answer is
reported as {"answer": sdp}; one webrtcbin cannot apply as {"error": "..."}. Bounded: it exits
after --seconds.

    /usr/bin/python3 viewer.py --host H --port P --device D --session S [--seconds N]
                               [--audio] [--video-codec H264|VP8]

Debian's python3 (python3-gi, python3-paho-mqtt), not a virtual environment: GStreamer's
bindings come from Debian.
"""

import argparse
import json
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402


def emit(value):
    print(json.dumps(value), flush=True)


CAPS = {
    "H264": "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f",
    "VP8": "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
    "OPUS": "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,"
    "encoding-params=(string)2",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--prefix", default="campeer")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--video-codec", choices=["H264", "VP8"], default="H264")
    args = parser.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    pipeline = Gst.Pipeline.new("viewer")
    webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
    webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipeline.add(webrtc)
    recvonly = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
    webrtc.emit("add-transceiver", recvonly, Gst.caps_from_string(CAPS[args.video_codec]))
    if args.audio:
        webrtc.emit("add-transceiver", recvonly, Gst.caps_from_string(CAPS["OPUS"]))

    counts = {"frames": 0, "audio_frames": 0}
    sent = []
    in_topic = f"{args.prefix}/{args.device}/in/{args.session}"
    out_topic = f"{args.prefix}/{args.device}/out/{args.session}"
    client = mqtt.Client(client_id=args.session)

    def publish(value):
        client.publish(in_topic, json.dumps(value), qos=1)

    def on_decoded_pad(_decodebin, pad):
        kind = pad.get_current_caps().to_string()
        key = "frames" if kind.startswith("video/") else "audio_frames"
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

        def count(_pad, _info):
            counts[key] += 1
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, count)

    def on_pad_added(_webrtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decodebin = Gst.ElementFactory.make("decodebin")
        decodebin.connect("pad-added", on_decoded_pad)
        pipeline.add(decodebin)
        decodebin.sync_state_with_parent()
        pad.link(decodebin.get_static_pad("sink"))

    def make_offer():
        # The offer is borrowed from the promise's reply: both are kept alive while it is
        # used (Debian 12's bindings hand out the reply's own description, not a copy).
        created = Gst.Promise.new()
        webrtc.emit("create-offer", None, created)
        created.wait()
        reply = created.get_reply()
        offer = reply.get_value("offer")
        applied = Gst.Promise.new()
        webrtc.emit("set-local-description", offer, applied)
        applied.wait()
        result = applied.get_reply()
        if result is not None and result.has_field("error"):
            emit({"error": f"own offer: {result.get_value('error')}"})
        return False

    def on_gathering_state(_webrtc, _pspec):
        # The offer goes out once gathering is complete, candidates in it.
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not sent:
            sent.append(True)
            GLib.idle_add(send_offer)

    def send_offer():
        text = webrtc.get_property("local-description").sdp.as_text()
        emit({"offer": text})
        publish({"type": "offer", "sdp": text})
        return False

    def apply_answer(sdp):
        emit({"answer": sdp})
        result, message = GstSdp.SDPMessage.new_from_text(sdp)
        if result != GstSdp.SDPResult.OK:
            emit({"error": f"the answer does not parse: {result}"})
            return
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        promise = Gst.Promise.new()
        webrtc.emit("set-remote-description", answer, promise)
        promise.wait()
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            emit({"error": str(reply.get_value("error"))})

    def handle(value):
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "answer" and isinstance(value.get("sdp"), str):
            apply_answer(value["sdp"])
        elif kind == "candidate" and isinstance(value.get("candidate"), dict):
            candidate = value["candidate"]
            line = candidate.get("candidate", "")
            index = candidate.get("sdpMLineIndex") or 0
            if line:
                webrtc.emit("add-ice-candidate", index, line)
        elif kind in ("error", "busy", "hangup"):
            emit({"signal": value})
        return False

    def on_message(_client, _userdata, message):
        try:
            value = json.loads(message.payload)
        except ValueError:
            return
        GLib.idle_add(handle, value)

    subscribed = threading.Event()

    def on_subscribe(*_):
        subscribed.set()

    webrtc.connect("notify::ice-gathering-state", on_gathering_state)
    webrtc.connect("pad-added", on_pad_added)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(args.host, args.port)
    client.loop_start()
    client.subscribe(out_topic, qos=1)
    if not subscribed.wait(10):
        emit({"error": "the broker did not confirm the subscription"})
        sys.exit(1)
    # The offer is made once, before the main loop runs (webrtcbin's own negotiation-needed
    # signal comes again as the answer is applied, and campeer would count each new offer as
    # a renegotiation).
    pipeline.set_state(Gst.State.PLAYING)
    make_offer()

    deadline = time.monotonic() + args.seconds

    def report():
        ice = webrtc.get_property("ice-connection-state").value_nick
        ice += "/" + webrtc.get_property("ice-gathering-state").value_nick
        if time.monotonic() >= deadline:
            emit({"done": True, **counts, "ice": ice})
            loop.quit()
            return False
        emit({**counts, "ice": ice})
        return True

    GLib.timeout_add(1000, report)
    loop.run()
    publish({"type": "hangup"})
    time.sleep(0.2)
    pipeline.set_state(Gst.State.NULL)
    client.loop_stop()
    sys.exit(0)


main()
