#!/usr/bin/env python3
"""The benchmark's peer: an aiortc server built the way aiortc's own examples build one
(webcam.py's POST /offer with a MediaRelay, server.py's MediaRecorder), to compare with.

  stream --port P [--width 1280 --height 720] [--bars] [--grain] [--track-per-viewer]
         POST /offer -> a viewer of a generated 30 fps picture stamped with the wall-clock
         time exactly like mediaweave's `stamp` hook (40 blocks of 24x24 pixels,
         milliseconds, most significant bit first); one source track shared through
         MediaRelay and, as aiortc does, encoded once per viewer. The picture is a still grey
         ramp with a small moving bar, or with --bars (and --grain) what
         `aiortc_publisher.py --stamp` (--grain) sends. With --track-per-viewer every viewer
         gets a source track of its own, straight into its encoder as a publisher's is (no
         MediaRelay queue between them).
  record --port P --out FILE                    POST /offer from a publisher -> MediaRecorder
         (which decodes and re-encodes); SIGTERM stops it so the file is finalized.
  relay --port P                                POST /publish from one publisher (an
         aiortc-style JSON offer; a second one while it is live gets 409), POST /offer -> a
         viewer of its video through MediaRelay: decoded once, encoded once per viewer, as
         aiortc does (503 while nobody publishes). Unbuffered: each viewer's encoder takes
         the newest frame, so a busy one drops frames; buffered (aiortc's default) it would
         queue them, and the delay would grow without bound once it falls behind. GET
         /status -> {"publishing": bool, "viewers": N}.

--h264 (stream, relay) sends viewers H.264 only; otherwise aiortc answers with the viewer's
first choice (aiortc's own viewer offers VP8 first). --bitrate KBPS holds the H.264 encoder
there (aiortc starts at 1000 and then follows the viewer's estimate).

Prints {"listening": P} once it accepts offers.
"""
import argparse
import asyncio
import json
import signal
import time

from peerkit import STAMP_BLOCK, add_grain, draw_stamp, grey_bars, hold_h264_bitrate, loopback_only

loopback_only()

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.contrib.media import MediaBlackhole, MediaRecorder, MediaRelay  # noqa: E402


class StampedTrack(VideoStreamTrack):
    """A grey ramp with a moving bar (or, with `bars`, moving grey bars; with `grain`, a
    camera's noise over them), stamped with the time each frame is handed out."""

    def __init__(self, width, height, bars=False, grain=False):
        super().__init__()
        self.width, self.height, self.count = width, height, 0
        self.bars, self.grain = bars, grain
        ramp = np.tile(np.linspace(40, 200, width).astype(np.uint8), (height, 1))
        chroma = np.full((height // 2, width), 128, np.uint8)
        self.base = np.vstack([ramp, chroma])

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        image = self.base.copy()
        if self.bars:
            image[:self.height] = np.frombuffer(grey_bars(self.count, self.width), np.uint8)
        else:
            x = (self.count * 8) % self.width
            image[STAMP_BLOCK * 2:self.height, x:x + 16] = 235
        if self.grain:
            add_grain(image[:self.height], self.count)
        self.count += 1
        draw_stamp(image, int(time.time() * 1000))
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stream", "record", "relay"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--bars", action="store_true", help="stream: moving grey bars, not the ramp")
    ap.add_argument("--grain", action="store_true", help="stream: add a camera's noise")
    ap.add_argument("--track-per-viewer", action="store_true", help="stream: no MediaRelay, a track each")
    ap.add_argument("--h264", action="store_true", help="stream, relay: H.264 only to viewers")
    ap.add_argument("--bitrate", type=int, help="kb/s: hold the H.264 encoder at this bitrate")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.bitrate:
        hold_h264_bitrate(args.bitrate * 1000)

    peers = set()
    relay = MediaRelay()
    picture = (args.width, args.height, args.bars, args.grain)
    source = StampedTrack(*picture) if args.mode == "stream" else None
    recorders = []
    # relay: the publisher's connection and video track, while it is live.
    published = {"pc": None, "video": None}
    viewers = set()

    def track_peer(pc, on_end=None):
        peers.add(pc)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                peers.discard(pc)
                if on_end:
                    on_end()

    def send_only_h264(pc, sender):
        if args.h264:
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
            next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(h264)

    async def answer(pc, params):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def offer(request):
        params = await request.json()
        if args.mode == "relay":
            if published["video"] is None:
                return web.json_response({"error": "nobody is publishing"}, status=503)
            pc = RTCPeerConnection()
            video = relay.subscribe(published["video"], buffered=False)

            def gone():
                viewers.discard(pc)
                video.stop()  # else MediaRelay queues every frame for it from now on

            track_peer(pc, gone)
            viewers.add(pc)
            send_only_h264(pc, pc.addTrack(video))
            return await answer(pc, params)
        pc = RTCPeerConnection()
        track_peer(pc)
        if source is not None:
            video = StampedTrack(*picture) if args.track_per_viewer else relay.subscribe(source)
            send_only_h264(pc, pc.addTrack(video))
            return await answer(pc, params)
        recorder = MediaRecorder(args.out)
        recorders.append(recorder)

        @pc.on("track")
        def on_track(track):
            recorder.addTrack(track)

        response = await answer(pc, params)
        await recorder.start()
        return response

    async def publish(request):
        params = await request.json()
        if published["pc"] is not None:
            return web.json_response({"error": "someone is publishing"}, status=409)
        pc = RTCPeerConnection()
        published["pc"] = pc

        def gone():
            if published["pc"] is pc:
                published["pc"] = published["video"] = None

        track_peer(pc, gone)
        # Whatever it sends is read all the time, watched or not: the video through the
        # relay (so a viewer gets frames from when it joins, not a backlog), audio dropped.
        sink = MediaBlackhole()

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                published["video"] = track
                sink.addTrack(relay.subscribe(track))
            else:
                sink.addTrack(track)

        response = await answer(pc, params)
        await sink.start()
        return response

    async def status(_request):
        return web.json_response({"publishing": published["video"] is not None, "viewers": len(viewers)})

    app = web.Application()
    app.router.add_post("/offer", offer)
    if args.mode == "relay":
        app.router.add_post("/publish", publish)
        app.router.add_get("/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(json.dumps({"listening": args.port}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for recorder in recorders:
        await recorder.stop()
    await asyncio.gather(*(pc.close() for pc in list(peers)))
    await runner.cleanup()


asyncio.run(main())
