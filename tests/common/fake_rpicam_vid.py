#!/usr/bin/env python3
"""A fake rpicam-vid for campeer's tests: the program's interface, not campeer's code.

Called as `fake_rpicam_vid.py STATE_DIR [rpicam-vid arguments]` (tests/common/rpicam.rs
writes a wrapper that supplies STATE_DIR). STATE_DIR/config.json says which camera modules
the board has, the colour bars to show and the frame rate; the file STATE_DIR/unplugged,
while it exists, makes the camera gone: listing shows none and a running stream fails the
way rpicam-vid does. Every stream start is logged, one JSON line of arguments, to
STATE_DIR/starts.

Like rpicam-vid with `--codec yuv420 -o -`, it writes raw I420 frames back to back on
standard output and, with `--metadata FILE --metadata-format txt`, each frame's metadata
after it, with the SensorTimestamp (CLOCK_MONOTONIC nanoseconds) of the frame's exposure.
Frames leave later than they were exposed, by a delay that alternates between the two
values in config "delays_ms", as a real camera's ISP and a busy board make them.
"""

import json
import os
import sys
import time

state_dir = sys.argv[1]
args = sys.argv[2:]
with open(os.path.join(state_dir, "config.json")) as f:
    config = json.load(f)
cameras = config["cameras"]


def unplugged():
    return os.path.exists(os.path.join(state_dir, "unplugged"))


if "--list-cameras" in args:
    if unplugged() or not cameras:
        print("No cameras available!")
        sys.exit(0)
    print("Available cameras")
    print("-----------------")
    for index, model in enumerate(cameras):
        print(f"{index} : {model} [3280x2464 10-bit RGGB] (/base/soc/i2c0mux/i2c@{index}/{model}@10)")
        print("    Modes: 'SRGGB10_CSI2P' : 640x480 [103.33 fps - (1000, 752)/1280x960 crop]")
        print("                             1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]")
        print("           'SRGGB8' : 640x480 [103.33 fps - (1000, 752)/1280x960 crop]")
    sys.exit(0)

options = {}
flags = {"--nopreview", "-n", "--flush"}
i = 0
while i < len(args):
    if args[i] in flags:
        options[args[i]] = True
        i += 1
    elif i + 1 < len(args):
        options[args[i]] = args[i + 1]
        i += 2
    else:
        print(f"ERROR: option {args[i]} needs a value", file=sys.stderr)
        sys.exit(255)

if options.get("--codec") != "yuv420" or options.get("--output") != "-":
    print("ERROR: the fake rpicam-vid only writes --codec yuv420 to --output -", file=sys.stderr)
    sys.exit(255)
camera = int(options.get("--camera", "0"))
if unplugged() or camera >= len(cameras):
    print("ERROR: *** no cameras available ***", file=sys.stderr)
    sys.exit(255)
width = int(options["--width"])
height = int(options["--height"])
fps = float(options.get("--framerate", "30"))
with open(os.path.join(state_dir, "starts"), "a") as f:
    f.write(json.dumps(args) + "\n")

print(f"Mode selection for {width}:{height}:12:P", file=sys.stderr)
sys.stderr.flush()

bars = config["bars"]


def bar(x):
    return bars[min(x * 8 // width, 7)]


chroma_width, chroma_height = width // 2, height // 2
plain_y = bytes(bar(col)[0] for col in range(width))
plain_u = bytes(bar(col * 2)[1] for col in range(chroma_width))
plain_v = bytes(bar(col * 2)[2] for col in range(chroma_width))


def frame(sequence):
    """The colour bars with a white 32x32 marker moving along the top, as the FUSE camera
    shows them (tests/common/fakecam.rs, bars_i420)."""
    marker = (sequence * 8) % (width - 32)
    marked_y = bytearray(plain_y)
    marked_y[marker:marker + 32] = b"\xeb" * 32
    marked_u = bytearray(plain_u)
    marked_u[marker // 2:marker // 2 + 16] = b"\x80" * 16
    marked_v = bytearray(plain_v)
    marked_v[marker // 2:marker // 2 + 16] = b"\x80" * 16
    y = b"".join(marked_y if 16 <= row < 48 else plain_y for row in range(height))
    u = b"".join(marked_u if 8 <= row < 24 else plain_u for row in range(chroma_height))
    v = b"".join(marked_v if 8 <= row < 24 else plain_v for row in range(chroma_height))
    return y + u + v


metadata = None
if "--metadata" in options:
    metadata = open(options["--metadata"], "w")

out = sys.stdout.buffer
period_ns = int(1e9 / fps)
delays_ns = [int(d * 1e6) for d in config.get("delays_ms", [0, 0])]
start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
sequence = 0
try:
    # Bounded: a forgotten fake ends by itself after an hour of frames.
    while sequence < fps * 3600:
        exposed = start + sequence * period_ns
        leaves = exposed + delays_ns[sequence % len(delays_ns)]
        wait = leaves - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if wait > 0:
            time.sleep(wait / 1e9)
        if unplugged():
            print("ERROR: Device timeout detected, attempting a restart!!!", file=sys.stderr)
            print("ERROR: *** failed to restart the camera ***", file=sys.stderr)
            sys.exit(255)
        out.write(frame(sequence))
        out.flush()
        if metadata is not None:
            metadata.write(f"ExposureTime=10000\nSensorTimestamp={exposed}\nLux=400\n\n")
            metadata.flush()
        sequence += 1
except BrokenPipeError:
    sys.exit(0)
