"""A reference camera for `cargo bench --bench stream`: the same job as campeer's test pattern,
done with aiortc (Python WebRTC) and libx264 (through PyAV), speaking campeer's MQTT
signaling, so that the bench can measure both doing it in the same run. It answers each
offer on {prefix}/{device}/in/+ with a 640x480@30 H.264 stream of campeer's own test pattern
(drawn the same way), on the session's out topic, and prints {"ready": true} once it
listens. Bounded: it exits after --seconds.

    python camera.py --host H --port P --device D [--seconds N]
"""

import argparse
import asyncio
import fractions
import json
import time

import aioice.ice
import paho.mqtt.client as mqtt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

# Host candidates on loopback only, like campeer's --ice-loopback-only: the bench's traffic
# stays on 127.0.0.0/8 (aioice leaves loopback out by itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

WIDTH, HEIGHT, FPS = 640, 480, 30


def emit(value):
    print(json.dumps(value), flush=True)


DIGIT_SEGMENTS = [63, 6, 91, 79, 102, 109, 125, 7, 127, 111]


class Pattern(VideoStreamTrack):
    """campeer's test pattern (src/media/pattern.rs), drawn the same way: a diagonal luma
    gradient drifting 4 pixels a frame, a bouncing box, the frame counter in seven-segment
    digits and the capture time as 48 squares, so that both encoders get the same content."""

    def __init__(self):
        super().__init__()
        self.gradient = bytes(60 + (i % 128) for i in range(WIDTH + HEIGHT + 128))
        cw, ch = WIDTH // 2, HEIGHT // 2
        self.u_row = bytes(96 + col * 64 // cw for col in range(cw))
        self.v_rows = [bytes([96 + row * 64 // ch]) * cw for row in range(ch)]
        self.count = 0
        self.start = None

    def fill(self, y, u, v, x0, y0, w, h, luma, chroma=None):
        for row in range(y0, y0 + h):
            y[row * WIDTH + x0:row * WIDTH + x0 + w] = bytes([luma]) * w
        if chroma is not None:
            cw = WIDTH // 2
            for row in range(y0 // 2, (y0 + h) // 2):
                u[row * cw + x0 // 2:row * cw + (x0 + w) // 2] = bytes([chroma[0]]) * (w // 2)
                v[row * cw + x0 // 2:row * cw + (x0 + w) // 2] = bytes([chroma[1]]) * (w // 2)

    def draw(self, n, unix_ms):
        shift = (n * 4) % 128
        y = bytearray(b"".join(self.gradient[row + shift:row + shift + WIDTH] for row in range(HEIGHT)))
        u = bytearray(self.u_row * (HEIGHT // 2))
        v = bytearray(b"".join(self.v_rows))
        size = (HEIGHT // 8) & ~1
        travel = WIDTH - size
        step = (n * 6) % (2 * travel)
        x = (step if step < travel else 2 * travel - step) & ~1
        top = (HEIGHT * 3 // 4 - size // 2) & ~1
        self.fill(y, u, v, x, top, size, size, 210, (90, 200))
        digits = [int(d) for d in str(n)]
        digit_h = HEIGHT // 5
        digit_w = digit_h // 2
        thick = max(digit_h // 8, 2)
        gap = max(digit_w // 3, 1)
        total = len(digits) * digit_w + (len(digits) - 1) * gap
        margin = thick * 2
        x0, y0 = (WIDTH - total) // 2, (HEIGHT - digit_h) // 2
        self.fill(y, u, v, x0 - margin, y0 - margin, total + 2 * margin, digit_h + 2 * margin, 16, (128, 128))
        half = digit_h // 2
        for i, digit in enumerate(digits):
            dx = x0 + i * (digit_w + gap)
            bars = [(0, 0, digit_w, thick), (digit_w - thick, 0, thick, half),
                    (digit_w - thick, half, thick, digit_h - half), (0, digit_h - thick, digit_w, thick),
                    (0, half, thick, digit_h - half), (0, 0, thick, half),
                    (0, half - thick // 2, digit_w, thick)]
            for bit, (bx, by, bw, bh) in enumerate(bars):
                if DIGIT_SEGMENTS[digit] & (1 << bit):
                    self.fill(y, u, v, dx + bx, y0 + by, bw, bh, 235)
        per_row = WIDTH // 16
        for bit in range(48):
            row, col = bit // per_row, bit % per_row
            one = (unix_ms >> (47 - bit)) & 1
            self.fill(y, u, v, col * 16, row * 16, 16, 16, 235 if one else 16, (128, 128))
        return y, u, v

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.count / FPS
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        y, u, v = self.draw(self.count, int(time.time() * 1000))
        frame = VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes(y))
        frame.planes[1].update(bytes(u))
        frame.planes[2].update(bytes(v))
        frame.pts = self.count * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return frame


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--prefix", default="campeer")
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue(maxsize=1000)
    sessions = {}

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"reference-{args.device}")

    def on_message(_client, _userdata, message):
        try:
            value = json.loads(message.payload)
        except ValueError:
            return
        session = message.topic.rsplit("/", 1)[-1]
        loop.call_soon_threadsafe(lambda: inbox.full() or inbox.put_nowait((session, value)))

    subscribed = asyncio.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_: loop.call_soon_threadsafe(subscribed.set)
    # Online and offline as campeer says them (retained), so viewers wait for it as for campeer.
    status_topic = f"{args.prefix}/{args.device}/status"
    client.will_set(status_topic, json.dumps({"state": "offline"}), qos=1, retain=True)
    client.connect(args.host, args.port)
    client.loop_start()
    client.subscribe(f"{args.prefix}/{args.device}/in/+", qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)
    client.publish(status_topic, json.dumps({"state": "online"}), qos=1, retain=True)
    emit({"ready": True})

    while time.monotonic() < deadline:
        try:
            session, message = await asyncio.wait_for(inbox.get(), 0.5)
        except asyncio.TimeoutError:
            continue
        kind = message.get("type") if isinstance(message, dict) else None
        out_topic = f"{args.prefix}/{args.device}/out/{session}"
        if kind == "offer" and session not in sessions and len(sessions) < 8:
            # No ICE servers: aiortc would otherwise ask a public STUN server.
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            sessions[session] = pc
            pc.addTrack(Pattern())
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            # aiortc gathers every candidate before setLocalDescription returns.
            await pc.setLocalDescription(await pc.createAnswer())
            client.publish(out_topic, json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}), qos=1)
        elif kind == "hangup" and session in sessions:
            await sessions.pop(session).close()
    for pc in sessions.values():
        await pc.close()
    client.loop_stop()


asyncio.run(main())
