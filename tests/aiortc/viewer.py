"""A campeer viewer built on aiortc (a WebRTC stack that offers goog-remb but not
transport-cc, and estimates its link itself from the abs-send-time stamps), for the Rust
tests: it joins over MQTT as a browser does (recvonly H.264 offer, trickled candidates),
decodes the video with PyAV, and prints one JSON line a second ({"frames": n, "state": s}),
then {"done": true, ...}. Bounded: it exits after --seconds.

    python viewer.py --host H --port P --device D --session S [--seconds N] [--audio]
                     [--video-codec H264|VP8] [--hostile-renegotiation AFTER]
                     [--wait-online LIMIT]

With --audio it also offers to receive audio, as a browser with a microphone-less page does;
--video-codec offers that video codec alone. The answer is reported as {"answer": sdp}, one
it cannot apply as {"error": "..."}; "frames" counts video frames, "audio_frames" audio.

--hostile-renegotiation AFTER: AFTER seconds in, it sends its own offer again with every H.264
profile-level-id replaced by `aé001` (six bytes, five characters), as a renegotiation, and
reports the device's reply as {"renegotiation_reply": message, "after": seconds}; it applies no
answer to that offer.

--wait-online LIMIT: offers only once the device's status says online, as the page does,
waiting at most LIMIT seconds (then it reports {"done": true, "never_online": true}); --seconds
counts from then. It reports {"online_after": s} and, with the first decoded frame,
{"first_frame_after": s}, both in seconds since it started (the latter also as
"first_frame_unix", the wall clock's seconds since 1970, for a test to time it from its own events).
"""

import argparse
import asyncio
import json
import re
import time

import paho.mqtt.client as mqtt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


def emit(value):
    print(json.dumps(value), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--prefix", default="campeer")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--video-codec", choices=["H264", "VP8"])
    parser.add_argument("--hostile-renegotiation", type=float)
    parser.add_argument("--wait-online", type=float)
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.seconds
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue(maxsize=1000)

    # No ICE servers: aiortc would otherwise ask a public STUN server.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver("video", direction="recvonly")
    if args.video_codec:
        wanted = f"video/{args.video_codec}".lower()
        codecs = RTCRtpReceiver.getCapabilities("video").codecs
        video.setCodecPreferences([c for c in codecs if c.mimeType.lower() == wanted])
    if args.audio:
        pc.addTransceiver("audio", direction="recvonly")
    frames = 0
    audio_frames = 0

    @pc.on("track")
    def on_track(track):
        async def consume():
            nonlocal frames, audio_frames
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                if track.kind == "video":
                    frames += 1
                    if frames == 1:
                        emit({"first_frame_after": time.monotonic() - started,
                              "first_frame_unix": time.time()})
                else:
                    audio_frames += 1

        asyncio.ensure_future(consume())

    in_topic = f"{args.prefix}/{args.device}/in/{args.session}"
    out_topic = f"{args.prefix}/{args.device}/out/{args.session}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.session)

    status_topic = f"{args.prefix}/{args.device}/status"
    online = asyncio.Event()

    def on_message(_client, _userdata, message):
        try:
            value = json.loads(message.payload)
        except ValueError:
            return
        if message.topic == status_topic:
            if isinstance(value, dict) and value.get("state") == "online":
                loop.call_soon_threadsafe(online.set)
            return
        loop.call_soon_threadsafe(lambda: inbox.full() or inbox.put_nowait(value))

    subscribed = asyncio.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_: loop.call_soon_threadsafe(subscribed.set)
    client.connect(args.host, args.port)
    client.loop_start()
    client.subscribe(out_topic, qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)
    if args.wait_online is not None:
        client.subscribe(status_topic, qos=1)
        try:
            await asyncio.wait_for(online.wait(), args.wait_online)
        except asyncio.TimeoutError:
            emit({"done": True, "never_online": True, "frames": 0, "audio_frames": 0})
            client.loop_stop()
            return
        emit({"online_after": time.monotonic() - started})
        deadline = time.monotonic() + args.seconds

    # aiortc gathers every candidate before setLocalDescription returns: they are in the offer.
    await pc.setLocalDescription(await pc.createOffer())
    client.publish(in_topic, json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}), qos=1)

    last_report = 0.0
    hostile_at = None if args.hostile_renegotiation is None else time.monotonic() + args.hostile_renegotiation
    hostile_sent = None
    while time.monotonic() < deadline:
        if hostile_at is not None and hostile_sent is None and time.monotonic() >= hostile_at:
            hostile = re.sub(r"profile-level-id=[0-9A-Fa-f]{6}", "profile-level-id=aé001",
                             pc.localDescription.sdp)
            client.publish(in_topic, json.dumps({"type": "offer", "sdp": hostile}), qos=1)
            hostile_sent = time.monotonic()
        try:
            message = await asyncio.wait_for(inbox.get(), 0.2)
        except asyncio.TimeoutError:
            message = None
        if message is not None:
            kind = message.get("type") if isinstance(message, dict) else None
            if hostile_sent is not None and kind in ("answer", "error"):
                emit({"renegotiation_reply": message, "after": time.monotonic() - hostile_sent})
            elif kind == "answer":
                emit({"answer": message.get("sdp")})
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))
                except Exception as e:
                    emit({"error": f"{type(e).__name__}: {e}", "answer": message["sdp"]})
            elif kind == "candidate" and isinstance(message.get("candidate"), dict):
                line = message["candidate"].get("candidate", "")
                if line.startswith("candidate:"):
                    candidate = candidate_from_sdp(line.split(":", 1)[1])
                    candidate.sdpMid = message["candidate"].get("sdpMid")
                    candidate.sdpMLineIndex = message["candidate"].get("sdpMLineIndex")
                    await pc.addIceCandidate(candidate)
            elif kind in ("error", "busy", "hangup"):
                emit({"signal": message})
        if time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            emit({"frames": frames, "audio_frames": audio_frames, "state": pc.connectionState})
    emit({"done": True, "frames": frames, "audio_frames": audio_frames, "state": pc.connectionState})
    client.publish(in_topic, json.dumps({"type": "hangup"}), qos=1)
    await pc.close()
    client.loop_stop()


asyncio.run(main())
