"""A WHEP player built on aiortc, for the Rust tests: POSTs a recvonly offer to a WHEP
endpoint, applies the answer, decodes what arrives for --seconds, then DELETEs the session
(and DELETEs it again, which must find nothing). With --trickle the offer goes without its
candidates and they follow in a PATCH (application/trickle-ice-sdpfrag, If-Match: the ETag).
Prints one JSON line per step: {"options": status, CORS headers}, {"post": status, "location", "etag", "links", "retry_after",
"accept_patch"}, {"patch": status}, {"frames": n} each second, {"delete": status},
{"delete_again": status}, then {"done": true, "frames": n}. Bounded: every request has a
timeout and the playing lasts --seconds.

    python whep.py --url http://HOST:PORT/whep/DEVICE [--seconds N] [--token T] [--trickle]
"""

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


def emit(value):
    print(json.dumps(value), flush=True)


def request(method, url, body=None, headers=None):
    """(status, headers as a list of pairs, body) of one HTTP request, errors included."""
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, response.getheaders(), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, list(error.headers.items()), error.read().decode(errors="replace")


def header(headers, name):
    values = [v for k, v in headers if k.lower() == name]
    return values[0] if values else None


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--token")
    parser.add_argument("--trickle", action="store_true")
    args = parser.parse_args()
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    frames = 0

    @pc.on("track")
    def on_track(track):
        async def consume():
            nonlocal frames
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                frames += 1

        asyncio.ensure_future(consume())

    # A browser's CORS preflight, as a player on another origin makes it.
    status, headers, _ = await asyncio.to_thread(request, "OPTIONS", args.url, None, {
        "Origin": "http://player.example", "Access-Control-Request-Method": "POST"})
    emit({"options": status,
          "allow_origin": header(headers, "access-control-allow-origin"),
          "allow_methods": header(headers, "access-control-allow-methods"),
          "allow_headers": header(headers, "access-control-allow-headers"),
          "accept_post": header(headers, "accept-post")})

    # aiortc gathers every candidate before setLocalDescription returns.
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    lines = offer.splitlines()
    candidates = [l for l in lines if l.startswith("a=candidate:")]
    if args.trickle:
        offer = "\r\n".join(l for l in lines if not l.startswith("a=candidate:")
                            and l != "a=end-of-candidates") + "\r\n"
    status, headers, body = await asyncio.to_thread(
        request, "POST", args.url, offer, {"Content-Type": "application/sdp", **auth})
    location = header(headers, "location")
    etag = header(headers, "etag")
    emit({"post": status, "location": location, "etag": etag,
          "links": [v for k, v in headers if k.lower() == "link"],
          "retry_after": header(headers, "retry-after"),
          "accept_patch": header(headers, "accept-patch"),
          "body": body if status != 201 else None})
    if status != 201 or not location:
        emit({"done": True, "frames": 0})
        await pc.close()
        return
    resource = urllib.parse.urljoin(args.url, location)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    if args.trickle:
        def attribute(name):
            return next((l for l in lines if l.startswith(f"a={name}:")), None)
        fragment = [attribute("ice-ufrag"), attribute("ice-pwd"), "m=video 9 UDP/TLS/RTP/SAVPF 0",
                    attribute("mid"), *candidates, "a=end-of-candidates"]
        fragment = "\r\n".join(l for l in fragment if l) + "\r\n"
        status, _, _ = await asyncio.to_thread(
            request, "PATCH", resource, fragment,
            {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": etag or "*", **auth})
        emit({"patch": status})

    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        emit({"frames": frames, "state": pc.connectionState})
    status, _, _ = await asyncio.to_thread(request, "DELETE", resource, None, auth)
    emit({"delete": status})
    status, _, _ = await asyncio.to_thread(request, "DELETE", resource, None, auth)
    emit({"delete_again": status})
    emit({"done": True, "frames": frames})
    await pc.close()


asyncio.run(main())
