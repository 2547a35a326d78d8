"""Shared by the test peers: keep aiortc's ICE on loopback, a tiny HTTP client, the moving grey
bars the aiortc peers draw (with grain, at a held bitrate), and the time stamp that
mediaweave's `stamp` hook draws (40 blocks of 24x24 pixels in the top-left corner,
milliseconds since the epoch, most significant bit first). Imports nothing outside the
standard library at the top, so system-Python peers (GObject bindings) can use it too."""
import urllib.request

STAMP_BITS, STAMP_BLOCK = 40, 24


def loopback_only():
    """Tests stay on loopback: gather host candidates on 127.0.0.1 only (aiortc peers)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def http(method, url, body=None, content_type=None):
    """(status, headers, text); resp.headers looks names up case-insensitively. Sends
    `Authorization: Bearer $MEDIAWEAVE_TOKEN` when that variable is set."""
    import os

    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if os.environ.get("MEDIAWEAVE_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["MEDIAWEAVE_TOKEN"])
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers, resp.read().decode()


def grey_bars(count, width):
    """One row of luma of the peers' moving grey bars at frame `count`: a ramp of 256 levels,
    repeated across, moving 4 pixels a frame (every row is alike)."""
    return bytes((x + count * 4) % 256 for x in range(width))


_GRAIN = {}  # (height, width) -> the noise add_grain takes its frames' grain from


def add_grain(luma, count):
    """Adds grain to a luma plane (a numpy array) in place, different at every frame `count`,
    as a camera's noise does. Without it the stamped grey bars are so predictable that H.264
    makes ~0.1 Mb/s of them at 720p whatever the target; with it, the target: the stream is as
    heavy as a camera's."""
    import numpy as np

    height, width = luma.shape
    pool = _GRAIN.get(luma.shape)
    if pool is None:
        pool = _GRAIN[luma.shape] = np.random.default_rng(1).integers(0, 16, (height + 64, width), np.uint8)
    offset = count * 17 % 64  # every offset once in 64 frames; never the same two in a row
    np.minimum(luma, 239, out=luma)
    luma += pool[offset:offset + height]


def hold_h264_bitrate(bps):
    """aiortc's H.264 encoder starts at 1 Mb/s and then follows the receiver's estimate
    (REMB; 0.5–3 Mb/s): hold it at `bps` instead, so that the streams compared are alike
    whatever each receiver estimates, or does not."""
    import aiortc.codecs.h264 as h264

    h264.H264Encoder.target_bitrate = property(lambda self: bps, lambda self, value: None)


def x264_options(extra):
    """Makes aiortc's H.264 encoder open libx264 with `extra` options on top of its own (aiortc
    sets its options on the codec context it creates; this wraps that context)."""
    import av
    import aiortc.codecs.h264 as h264

    class Codec:
        def __init__(self, inner):
            object.__setattr__(self, "_inner", inner)

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def __setattr__(self, name, value):
            if name == "options":
                value = dict(value, **extra)
            setattr(self._inner, name, value)

    class Av:
        def __getattr__(self, name):
            return getattr(av, name)

        class CodecContext:
            @staticmethod
            def create(*args, **kwargs):
                return Codec(av.CodecContext.create(*args, **kwargs))

    h264.av = Av()


def draw_stamp(luma, millis, block=STAMP_BLOCK):
    """Draws `millis` into a luma plane (a numpy array, limited range: 16 black, 235 white);
    `block` smaller than the hook's 24 fits narrower pictures (16: 640 pixels)."""
    for bit in range(STAMP_BITS):
        on = (millis >> (STAMP_BITS - 1 - bit)) & 1
        luma[:block, bit * block:(bit + 1) * block] = 235 if on else 16


def read_stamp(luma, block=STAMP_BLOCK):
    """The milliseconds drawn into a luma plane (a numpy array; >= 128 is a 1)."""
    half = block // 2
    value = 0
    for bit in range(STAMP_BITS):
        value = (value << 1) | int(luma[half, bit * block + half] >= 128)
    return value


def serve_client_commands(make, lines):
    """The command loop of a process that holds many stream clients (gst_viewers.py,
    stream_clients.py): `add N` starts N more (`make(index)`, each with `frames`, `bytes`,
    `error` and `close()`) and waits until each has a frame or an error; `measure S` prints
    every client's fps and kb/s over S seconds; `keyframe S` has each client that can
    (`ask_keyframe()`, counting `keyframes`) ask its sender for a keyframe and waits up to S
    seconds for them; `quit` (or the end of input) closes them all.
    Prints one JSON line per command."""
    import json
    import time

    clients = []
    for line in lines:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "add":
            fresh = []
            for _ in range(int(cmd[1])):
                fresh.append(make(len(clients) + len(fresh)))
                time.sleep(0.05)
            clients.extend(fresh)
            deadline = time.time() + 20 + 2 * len(fresh)
            while time.time() < deadline and not all(c.frames > 0 or c.error for c in fresh):
                time.sleep(0.1)
            connected = sum(1 for c in clients if c.frames > 0)
            errors = [c.error for c in fresh if c.error]
            print(json.dumps({"viewers": len(clients), "connected": connected, "errors": errors[:3]}), flush=True)
        elif cmd[0] == "measure":
            seconds = float(cmd[1])
            before = [(c.frames, c.bytes) for c in clients]
            time.sleep(seconds)
            fps = [(c.frames - f) / seconds for c, (f, _) in zip(clients, before)]
            kbps = [(c.bytes - b) * 8 / seconds / 1000 for c, (_, b) in zip(clients, before)]
            print(json.dumps({"fps": fps, "kbps": kbps}), flush=True)
        elif cmd[0] == "keyframe":
            # Each client that can asks its sender for a keyframe; answers the keyframes each
            # had received before and has now, once each has a new one or S seconds passed.
            seconds = float(cmd[1])
            asking = [c for c in clients if hasattr(c, "ask_keyframe")]
            before = [c.keyframes for c in asking]
            for c in asking:
                c.ask_keyframe()
            deadline = time.time() + seconds
            while time.time() < deadline and any(c.keyframes <= b for c, b in zip(asking, before)):
                time.sleep(0.1)
            print(json.dumps({"before": before, "after": [c.keyframes for c in asking]}), flush=True)
        elif cmd[0] == "quit":
            break
    for c in clients:
        c.close()
