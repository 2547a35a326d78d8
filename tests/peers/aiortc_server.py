#!/usr/bin/env python3
"""The benchmark's peer: an aiortc server built the way aiortc's own examples build one
(webcam.py's POST /offer with a MediaRelay, server.py's MediaRecorder), to compare with.

  stream --port P [--width 1280 --height 720]   POST /offer -> a viewer of a generated 30 fps
         picture stamped with the wall-clock time exactly like mediaweave's `stamp` hook (40
         blocks of 24x24 pixels, milliseconds, most significant bit first); one source track
         shared through MediaRelay and, as aiortc does, encoded once per viewer.
  record --port P --out FILE                    POST /offer from a publisher -> MediaRecorder
         (which decodes and re-encodes); SIGTERM stops it so the file is finalized.

Prints {"listening": P} once it accepts offers.
"""
import argparse
import asyncio
import json
import signal
import time

from peerkit import STAMP_BLOCK, draw_stamp, loopback_only

loopback_only()

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.contrib.media import MediaRecorder, MediaRelay  # noqa: E402


class StampedTrack(VideoStreamTrack):
    """A grey ramp with a moving bar, stamped with the time each frame is handed out."""

    def __init__(self, width, height):
        super().__init__()
        self.width, self.height, self.count = width, height, 0
        ramp = np.tile(np.linspace(40, 200, width).astype(np.uint8), (height, 1))
        chroma = np.full((height // 2, width), 128, np.uint8)
        self.base = np.vstack([ramp, chroma])

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        image = self.base.copy()
        x = (self.count * 8) % self.width
        image[STAMP_BLOCK * 2:self.height, x:x + 16] = 235
        self.count += 1
        draw_stamp(image, int(time.time() * 1000))
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stream", "record"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--out")
    args = ap.parse_args()

    peers = set()
    relay = MediaRelay()
    source = StampedTrack(args.width, args.height) if args.mode == "stream" else None
    recorders = []

    async def offer(request):
        params = await request.json()
        pc = RTCPeerConnection()
        peers.add(pc)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                peers.discard(pc)

        if source is not None:
            pc.addTrack(relay.subscribe(source))
        else:
            recorder = MediaRecorder(args.out)
            recorders.append(recorder)

            @pc.on("track")
            def on_track(track):
                recorder.addTrack(track)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        if source is None:
            await recorders[-1].start()
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    app = web.Application()
    app.router.add_post("/offer", offer)
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
