"""Viewers of a Janus VideoRoom publisher (campeer publishing over WHIP), built on aiortc, for
the Rust tests. Each subscribes through Janus' HTTP API as Janus' own demos do: create a
session, attach the VideoRoom plugin, list the room's participants, join as a subscriber of
the first publisher, answer Janus' offer, start. The first --decoding of them decode the video
with PyAV and read the test pattern's timestamp squares (the capture time, in ms since 1970)
from each picture; the others receive everything but decode nothing, as a player would that
only relays. It prints JSON lines: {"subscribed": i} once each is answered,
{"first_frame_after": s} with the first decoded picture, {"frames": n} every second, then
{"done": true, "frames": n, "latencies_ms": [...]} (glass to glass of each decoded picture).
Bounded: it exits after --seconds.

    python janus_viewer.py --janus http://10.0.0.2:8088/janus --room 1234 \
        [--subscribers N] [--decoding K] [--seconds S] [--wait-publisher LIMIT]
"""

import argparse
import asyncio
import json
import random
import time
import urllib.request

import aiortc.rtcrtpreceiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import get_decoder as real_decoder


def emit(value):
    print(json.dumps(value), flush=True)


class NoDecoder:
    """Takes every encoded picture and gives back none: a subscriber that only receives."""

    def decode(self, encoded_frame):
        return []


DECODING = set()


def choose_decoder(codec):
    # aiortc makes a decoder per receiver in its own thread, in the order receivers start;
    # sound is received but never decoded.
    if codec.mimeType.lower().startswith("video/") and DECODING:
        DECODING.pop()
        return real_decoder(codec)
    return NoDecoder()


aiortc.rtcrtpreceiver.get_decoder = choose_decoder


def read_timestamp_squares(y, stride, width, height):
    """The test pattern's 48-bit capture time: 16x16 squares, MSB first, row-major."""
    per_row = width // 16
    value = 0
    for bit in range(48):
        row, col = divmod(bit, per_row)
        y0, x0 = row * 16 + 4, col * 16 + 4
        if y0 + 8 > height:
            return 0
        total = 0
        for dy in range(8):
            start = (y0 + dy) * stride + x0
            total += sum(y[start:start + 8])
        value = (value << 1) | (1 if total // 64 > (235 + 16) // 2 else 0)
    return value


class Janus:
    """Janus' HTTP API: one session and one VideoRoom handle."""

    def __init__(self, base):
        self.base = base
        self.session = None
        self.handle = None

    def post(self, path, body):
        body = dict(body, transaction=str(random.getrandbits(48)))
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def poll(self):
        url = f"{self.base}/{self.session}?maxev=1&rid={random.getrandbits(32)}"
        with urllib.request.urlopen(url, timeout=35) as reply:
            return json.loads(reply.read())

    def open(self):
        self.session = self.post("", {"janus": "create"})["data"]["id"]
        attached = self.post(f"/{self.session}",
                             {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        self.handle = attached["data"]["id"]

    def message(self, body, jsep=None):
        request = {"janus": "message", "body": body}
        if jsep:
            request["jsep"] = jsep
        return self.post(f"/{self.session}/{self.handle}", request)


async def run_in_thread(function, *args):
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def publisher_of(janus, room, limit):
    """The first publisher in the room, waiting up to `limit` seconds for one."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        reply = await run_in_thread(janus.message, {"request": "listparticipants", "room": room})
        participants = reply.get("plugindata", {}).get("data", {}).get("participants", [])
        publishers = [p["id"] for p in participants if p.get("publisher")]
        if publishers:
            return publishers[0]
        await asyncio.sleep(0.2)
    return None


async def subscribe(args, index, feed, started, shared):
    janus = Janus(args.janus)
    await run_in_thread(janus.open)
    await run_in_thread(janus.message, {"request": "join", "ptype": "subscriber",
                                        "room": args.room, "streams": [{"feed": feed}]})
    offer = None
    while offer is None and time.monotonic() < started + args.seconds:
        event = await run_in_thread(janus.poll)
        offer = event.get("jsep")
    if offer is None:
        emit({"error": f"subscriber {index} got no offer"})
        return
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    shared["pcs"].append(pc)

    @pc.on("track")
    def on_track(track):
        if track.kind != "video":
            return

        async def consume():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                shared["frames"] += 1
                if shared["frames"] == 1:
                    emit({"first_frame_after": time.monotonic() - started,
                          "first_frame_unix": time.time()})
                plane = frame.planes[0]
                capture_ms = read_timestamp_squares(
                    bytes(plane), plane.line_size, frame.width, frame.height)
                if capture_ms:
                    shared["latencies"].append(int(time.time() * 1000) - capture_ms)

        asyncio.ensure_future(consume())

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
    answer = await pc.createAnswer()
    await pc.setLocalDescription(answer)
    await run_in_thread(janus.message, {"request": "start"},
                        {"type": "answer", "sdp": pc.localDescription.sdp})
    emit({"subscribed": index})

    # Janus ends a session it hears nothing from for a minute: keep polling meanwhile.
    while time.monotonic() < started + args.seconds:
        try:
            await run_in_thread(janus.poll)
        except Exception:
            await asyncio.sleep(1)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--janus", required=True)
    parser.add_argument("--room", type=int, default=1234)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--decoding", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--wait-publisher", type=float, default=20)
    args = parser.parse_args()
    DECODING.update(range(min(args.decoding, args.subscribers)))
    started = time.monotonic()
    shared = {"frames": 0, "latencies": [], "pcs": []}

    lister = Janus(args.janus)
    await run_in_thread(lister.open)
    feed = await publisher_of(lister, args.room, args.wait_publisher)
    if feed is None:
        emit({"done": True, "no_publisher": True})
        return
    emit({"publisher_after": time.monotonic() - started})
    tasks = [asyncio.ensure_future(subscribe(args, i, feed, started, shared))
             for i in range(args.subscribers)]

    while time.monotonic() < started + args.seconds:
        await asyncio.sleep(1)
        emit({"frames": shared["frames"]})
    for task in tasks:
        task.cancel()
    for pc in shared["pcs"]:
        await pc.close()
    emit({"done": True, "frames": shared["frames"], "latencies_ms": shared["latencies"]})


if __name__ == "__main__":
    asyncio.run(main())
