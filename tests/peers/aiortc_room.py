#!/usr/bin/env python3
"""A participant of a video call, for the benchmark's `rooms` scenario: stock aiortc sending a
stamped 640x480@30 picture (moving grey bars with grain, H.264 held at --bitrate) and watching
every other participant, counting their frames and reading their stamps.

  room BASE ROOM NAME --others N    through mediaweave: WHIP join to BASE/whip/ROOM?name=NAME,
                                    then WHEP for each other participant (from the room's list)
  mesh --index I --ports P0,P1,...  peer to peer, as the tutorials build it: a connection to
                                    every other peer (this one offers to the peers after it and
                                    answers the ones before it on 127.0.0.1:P_I/offer), each
                                    sending this peer's picture (an encoder per connection) and
                                    receiving the other's

aiortc's H.264 encoder runs x264's `ultrafast` preset here (--preset): with its default,
`medium`, one 640x480 frame with grain takes ~26 ms, so four participants' encoders alone
would fill this machine's two cores and every figure would be theirs.

Prints "ready" once it decodes every other participant; on SIGTERM prints one JSON line:
{"name", "fps": {other: frames per second since ready}, "sent_fps": frames this one made per
second since ready (aiortc makes them only as fast as it can encode), "latencies_ms": [now -
stamp, ...]}
and leaves (WHIP/WHEP DELETE).
"""
import argparse
import asyncio
import json
import signal
import time

from peerkit import (STAMP_BITS, add_grain, draw_stamp, grey_bars, hold_h264_bitrate, http, loopback_only,
                     read_stamp, x264_options)

loopback_only()

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402


# The stamp's blocks: 40 of 16 pixels span a 640-pixel row.
STAMP_BLOCK = 16


class Picture(VideoStreamTrack):
    """Moving grey bars with grain, the time stamped in as each frame goes to the encoder."""

    def __init__(self, width, height):
        super().__init__()
        self.width, self.height, self.count = width, height, 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma_size = frame.planes[0].line_size
        chroma = frame.planes[1].line_size * (self.height // 2)
        frame.planes[0].update(grey_bars(self.count, luma_size) * self.height)
        frame.planes[1].update(bytes([128]) * chroma)
        frame.planes[2].update(bytes([128]) * chroma)
        luma = np.frombuffer(frame.planes[0], np.uint8).reshape(self.height, luma_size)
        add_grain(luma, self.count)
        draw_stamp(luma, int(time.time() * 1000), STAMP_BLOCK)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


def x264_preset(preset):
    """aiortc's H.264 encoder with x264's `preset` (aiortc sets none: x264's medium)."""
    x264_options({"preset": preset})


def h264_only(pc, sender):
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(codecs)


class Watch:
    """Frames of the other participants: counts since `ready`, stamps' latencies."""

    def __init__(self):
        self.frames, self.at_ready, self.latencies = {}, {}, []
        self.ready_at = None

    async def count(self, who, track):
        self.frames.setdefault(who, 0)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames[who] += 1
            if self.ready_at is None:
                continue
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
            now = int(time.time() * 1000) & ((1 << STAMP_BITS) - 1)
            latency = (now - read_stamp(luma, STAMP_BLOCK)) % (1 << STAMP_BITS)
            if latency < 10_000:
                self.latencies.append(latency)

    def decoding(self, n):
        return len(self.frames) >= n and all(f >= 30 for f in self.frames.values())

    def mark_ready(self, made):
        self.ready_at = time.monotonic()
        self.at_ready = dict(self.frames)
        self.made_at_ready = made

    def report(self, name, made):
        seconds = time.monotonic() - (self.ready_at or time.monotonic())
        fps = {who: (n - self.at_ready.get(who, 0)) / seconds if seconds else 0.0 for who, n in self.frames.items()}
        sent = (made - self.made_at_ready) / seconds if seconds else 0.0
        return {"name": name, "fps": fps, "sent_fps": sent, "latencies_ms": self.latencies, "seconds": seconds}


async def post(url, body, content_type):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, http, "POST", url, body, content_type)


async def in_room(args, picture, watch, pcs, locations):
    base, room = args.base, args.room
    pc = RTCPeerConnection()
    pcs.append(pc)
    h264_only(pc, pc.addTrack(picture))
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await post(f"{base}/whip/{room}?name={args.name}", pc.localDescription.sdp.encode(),
                                         "application/sdp")
    assert status == 201, status
    locations.append(headers.get("Location"))
    me = headers.get("Location").rsplit("/", 1)[-1]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    watched = set()
    while len(watched) < args.others:
        loop = asyncio.get_running_loop()
        _, _, text = await loop.run_in_executor(None, http, "GET", f"{base}/api/pipelines/{room}")
        for p in json.loads(text).get("participants", []):
            if p["id"] == me or p["id"] in watched or not p["connected"]:
                continue
            viewer = RTCPeerConnection()
            pcs.append(viewer)
            viewer.addTransceiver("video", direction="recvonly")
            name = p["name"]

            @viewer.on("track")
            def on_track(track, name=name):
                if track.kind == "video":
                    asyncio.ensure_future(watch.count(name, track))

            await viewer.setLocalDescription(await viewer.createOffer())
            try:
                status, headers, answer = await post(f"{base}/whep/{room}/{p['id']}",
                                                     viewer.localDescription.sdp.encode(), "application/sdp")
            except Exception:  # noqa: BLE001 - still connecting (503): asked again below
                await viewer.close()
                pcs.remove(viewer)
                continue
            locations.append(headers.get("Location"))
            await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            watched.add(p["id"])
        await asyncio.sleep(0.3)


async def in_mesh(args, picture, watch, pcs):
    ports = [int(p) for p in args.ports.split(",")]

    def connect(pc, who):
        h264_only(pc, pc.addTrack(picture))

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                asyncio.ensure_future(watch.count(who, track))

    async def offer(request):
        params = await request.json()
        pc = RTCPeerConnection()
        pcs.append(pc)
        connect(pc, params["from"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    app = web.Application()
    app.router.add_post("/offer", offer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", ports[args.index]).start()
    for j in range(args.index + 1, len(ports)):
        pc = RTCPeerConnection()
        pcs.append(pc)
        connect(pc, f"peer{j}")
        await pc.setLocalDescription(await pc.createOffer())
        body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer", "from": f"peer{args.index}"}).encode()
        for _ in range(100):  # the other peer may not listen yet
            try:
                _, _, text = await post(f"http://127.0.0.1:{ports[j]}/offer", body, "application/json")
                break
            except OSError:
                await asyncio.sleep(0.2)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=json.loads(text)["sdp"], type="answer"))
    return runner


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["room", "mesh"])
    ap.add_argument("base", nargs="?")
    ap.add_argument("room", nargs="?")
    ap.add_argument("name", nargs="?")
    ap.add_argument("--others", type=int, default=3)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--ports", default="")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--bitrate", type=int, default=1000, help="kb/s of each H.264 encoder")
    ap.add_argument("--preset", default="ultrafast", help="x264's preset for aiortc's encoder")
    args = ap.parse_args()
    hold_h264_bitrate(args.bitrate * 1000)
    x264_preset(args.preset)
    picture = Picture(args.width, args.height)
    watch, pcs, locations = Watch(), [], []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = None
    if args.mode == "room":
        await in_room(args, picture, watch, pcs, locations)
        others, name = args.others, args.name
    else:
        runner = await in_mesh(args, picture, watch, pcs)
        others, name = len(args.ports.split(",")) - 1, f"peer{args.index}"
    while not watch.decoding(others) and not stop.is_set():
        await asyncio.sleep(0.1)
    watch.mark_ready(picture.count)
    print("ready", flush=True)
    await stop.wait()
    print(json.dumps(watch.report(name, picture.count)), flush=True)
    loop = asyncio.get_running_loop()
    for location in locations:
        try:
            await loop.run_in_executor(None, http, "DELETE", args.base + location)
        except Exception:  # noqa: BLE001 - already gone
            pass
    for pc in pcs:
        await pc.close()
    if runner:
        await runner.cleanup()


asyncio.run(main())
