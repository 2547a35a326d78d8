#!/usr/bin/env python3
"""A stock aiortc viewer, used by the tests as a real third-party WebRTC peer.

Connects to mediaweave in one of three ways, counts decoded video frames, and prints one JSON
line: {"frames": N, "width": W, "height": H, "audio_frames": M, "events": [...], "ttff_ms": T,
"rgb": [R, G, B]} (ttff: from the start of the offer, or of startSession, to the first decoded
frame; rgb: the mean colour of the middle of a recent frame).
The line is printed again at the end, with "signalling" (endSession and error messages over
the WebSocket protocol) and "delete_status" (WHEP: what DELETE of the session answered).
With --events N (WHEP and /offer) it opens a data channel and also waits for N hook events.
With --stamps it reads the time stamp that mediaweave's `stamp` hook (or the benchmark's aiortc
server) draws into each frame and adds "latencies_ms": now - stamp, per decoded frame.

  whep URL          POST the offer to a WHEP endpoint (application/sdp), DELETE at the end
  offer URL         POST {"sdp", "type"} to an aiortc-style /offer endpoint
  ws URL NAME       GStreamer signalling protocol: find producer meta.name == NAME, startSession,
                    answer its offer, trickle ICE
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.error

from peerkit import STAMP_BITS, STAMP_BLOCK, http, loopback_only, read_stamp

loopback_only()

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from aiortc.sdp import candidate_from_sdp  # noqa: E402




def luma_of(frame):
    """The luma plane of a decoded frame as a numpy array, without a conversion if possible."""
    import numpy as np

    if frame.format.name in ("yuv420p", "yuvj420p"):
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return frame.to_ndarray(format="gray")


def centre_rgb(frame):
    """The mean colour of the frame's middle quarter, [R, G, B]."""
    rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[0], rgb.shape[1]
    return [int(c) for c in rgb[h // 4:3 * h // 4, w // 4:3 * w // 4].reshape(-1, 3).mean(axis=0)]


async def count_video(track, result, started, stamps, block):
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        if result["frames"] == 0:
            result["ttff_ms"] = (now - started[0]) * 1000
        else:
            # The longest pause between two frames, and how many frames came after it.
            gap = (now - result["_last"]) * 1000
            if gap > result["max_gap_ms"]:
                result["max_gap_ms"], result["frames_after_max_gap"] = gap, 0
        result["_last"] = now
        result["frames_after_max_gap"] += 1
        result["frames"] += 1
        result["width"], result["height"] = frame.width, frame.height
        if result["frames"] % 10 == 1:
            result["rgb"] = centre_rgb(frame)
        if stamps:
            now = int(time.time() * 1000) & ((1 << STAMP_BITS) - 1)
            latency = (now - read_stamp(luma_of(frame), block)) % (1 << STAMP_BITS)
            if latency < 10_000:  # anything else is not a stamp
                result["latencies_ms"].append(latency)


async def count_audio(track, result):
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        result["audio_frames"] += 1


async def via_http(pc, mode, url, started):
    started[0] = time.monotonic()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    # aiortc gathers every candidate before setLocalDescription returns: no trickle needed.
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    loop = asyncio.get_running_loop()
    if mode == "whep":
        status, headers, answer = await loop.run_in_executor(
            None, http, "POST", url, offer.encode(), "application/sdp"
        )
        assert status == 201, status
        location = headers.get("Location")
    else:
        body = json.dumps({"sdp": offer, "type": "offer"}).encode()
        status, _, text = await loop.run_in_executor(
            None, http, "POST", url, body, "application/json"
        )
        answer = json.loads(text)["sdp"]
        location = None
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return location


async def via_ws(pc, url, name, started, result):
    import websockets

    ws = await websockets.connect(url)
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    await ws.send(json.dumps({"type": "setPeerStatus", "roles": ["listener"], "meta": {"name": "aiortc-test"}}))
    producer = None
    for _ in range(100):
        await ws.send(json.dumps({"type": "list"}))
        msg = json.loads(await ws.recv())
        while msg["type"] != "list":
            msg = json.loads(await ws.recv())
        for p in msg["producers"]:
            if (p.get("meta") or {}).get("name") == name:
                producer = p["id"]
        if producer:
            break
        await asyncio.sleep(0.1)
    assert producer, f"no producer named {name}"
    started[0] = time.monotonic()
    await ws.send(json.dumps({"type": "startSession", "peerId": producer}))
    session = None

    async def pump():
        try:
            await handle_messages()
        except websockets.exceptions.ConnectionClosed:
            pass

    async def handle_messages():
        nonlocal session
        async for raw in ws:
            msg = json.loads(raw)
            kind = msg["type"]
            if kind == "sessionStarted":
                session = msg["sessionId"]
            elif kind == "peer" and "sdp" in msg:
                await pc.setRemoteDescription(RTCSessionDescription(**msg["sdp"]))
                await pc.setLocalDescription(await pc.createAnswer())
                await ws.send(json.dumps({
                    "type": "peer", "sessionId": msg["sessionId"],
                    "sdp": {"type": "answer", "sdp": pc.localDescription.sdp},
                }))
            elif kind == "peer" and "ice" in msg:
                line = msg["ice"]["candidate"]
                if line.startswith("candidate:"):
                    line = line[len("candidate:"):]
                if line:
                    cand = candidate_from_sdp(line)
                    cand.sdpMLineIndex = msg["ice"]["sdpMLineIndex"]
                    await pc.addIceCandidate(cand)
            elif kind in ("endSession", "error"):
                print(json.dumps({"signalling": msg}), file=sys.stderr)
                result["signalling"].append(msg)

    return ws, asyncio.ensure_future(pump())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["whep", "offer", "ws"])
    ap.add_argument("url")
    ap.add_argument("name", nargs="?")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--hold", type=float, default=0, help="stay connected this long after counting")
    ap.add_argument("--events", type=int, default=0, help="hook events to wait for on a data channel")
    ap.add_argument("--stamps", action="store_true", help="measure latency from stamped frames")
    ap.add_argument("--stamp-block", type=int, default=STAMP_BLOCK, help="the stamp's block size (pixels)")
    args = ap.parse_args()

    pc = RTCPeerConnection()
    result = {"frames": 0, "width": 0, "height": 0, "rgb": None, "audio_frames": 0, "events": [], "ttff_ms": None,
              "max_gap_ms": 0, "frames_after_max_gap": 0, "_last": 0, "signalling": []}
    if args.stamps:
        result["latencies_ms"] = []
    started = [time.monotonic()]

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            asyncio.ensure_future(count_video(track, result, started, args.stamps, args.stamp_block))
        else:
            asyncio.ensure_future(count_audio(track, result))

    if args.events:
        channel = pc.createDataChannel("chat")

        @channel.on("message")
        def on_message(message):
            try:
                msg = json.loads(message)
            except ValueError:
                return
            if isinstance(msg, dict) and "event" in msg:
                result["events"].append(msg["event"])

    async def done():
        while result["frames"] < args.frames or len(result["events"]) < args.events:
            await asyncio.sleep(0.05)

    location, ws = None, None
    if args.mode == "ws":
        ws, _ = await via_ws(pc, args.url, args.name, started, result)
    else:
        location = await via_http(pc, args.mode, args.url, started)
    try:
        await asyncio.wait_for(done(), args.timeout)
    except asyncio.TimeoutError:
        pass
    result.pop("_last", None)
    print(json.dumps(result), flush=True)
    await asyncio.sleep(args.hold)
    if location:
        base = args.url.split("/whep/")[0]
        try:
            status, _, _ = await asyncio.get_running_loop().run_in_executor(
                None, http, "DELETE", base + location)
        except urllib.error.HTTPError as e:
            status = e.code
        result["delete_status"] = status
    await pc.close()
    if ws:
        await ws.close()
    # Again, with what happened while holding on (signalling messages, the DELETE's status).
    print(json.dumps(result), flush=True)


asyncio.run(main())
