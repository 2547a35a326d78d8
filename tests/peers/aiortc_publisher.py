#!/usr/bin/env python3
"""A stock aiortc publisher, used by the tests as a real third-party WHIP client.

Sends a generated test pattern (and silence) to a WHIP endpoint for a number of seconds after
the connection is up (or until SIGTERM), then DELETEs the session. Prints one JSON line:
{"seconds": S, "width": W, "height": H, "frames": N}.

  whip URL [--seconds 5] [--width 640] [--height 480] [--no-delete]
  offer URL ...     an aiortc-style POST /offer ({"sdp", "type"}) instead of WHIP

--colour R,G,B draws a solid colour (and a small moving bar at the top) instead of grey bars.
--h264 offers only H.264 video; the JSON line then also has "bytes_sent" (RTP payload bytes,
from getStats). --keyframes-on-request makes the H.264 encoder send keyframes only when the
receiver asks (RTCP PLI/FIR), as browsers do; aiortc's VP8 encoder already does (a keyframe at
most every 3000 frames otherwise).
--stamp draws the wall-clock time into each frame as it is handed to the encoder, as
mediaweave's `stamp` hook does (peerkit.draw_stamp), so that a viewer (aiortc_viewer.py
--stamps) measures glass-to-glass latency through whatever relays it. --grain adds a camera's
noise, so that the stream is as heavy as the encoder is let make it; --bitrate KBPS holds the
H.264 encoder there (aiortc starts at 1000 and then follows the receiver's estimate).
--say TEXT (repeatable) opens a data channel and sends each line on it, one a second, once
connected (a room's chat), after --say-after seconds and, with --say-when N, once the room
(of the WHIP URL) has N connected participants; every line the service sends on it is reported
as "chat".
"""
import argparse
import asyncio
import json
import signal
import time

from peerkit import add_grain, draw_stamp, grey_bars, hold_h264_bitrate, http, loopback_only, x264_options

loopback_only()

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack  # noqa: E402


def keyframes_on_request():
    """aiortc's H.264 encoder leaves libx264 to place keyframes itself (about one a second
    here); make it place none, so that only a PLI/FIR (on which aiortc forces one) starts one."""
    x264_options({"x264-params": "keyint=infinite:scenecut=0"})


def yuv(r, g, b):
    """BT.601 limited range, as decoders read it back."""
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


class Pattern(VideoStreamTrack):
    """Moving grey bars, 30 frames per second; or a solid colour with a small moving bar at
    the top (so that frames differ), when `colour` is (R, G, B). With `grain`, a camera's
    noise over it; with `stamp`, the time each frame was made in its top-left corner."""

    def __init__(self, width, height, colour=None, stamp=False, grain=False):
        super().__init__()
        self.width, self.height, self.count, self.colour = width, height, 0, colour
        self.stamp, self.grain = stamp, grain

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma_size = frame.planes[0].line_size
        chroma_size = frame.planes[1].line_size * (self.height // 2)
        if self.colour:
            y, u, v = yuv(*self.colour)
            bar = bytes(235 if (x - self.count * 4) % 64 < 8 else y for x in range(luma_size))
            frame.planes[0].update(bar * 8 + bytes([y]) * (luma_size * (self.height - 8)))
            frame.planes[1].update(bytes([u]) * chroma_size)
            frame.planes[2].update(bytes([v]) * chroma_size)
        else:
            frame.planes[0].update(grey_bars(self.count, luma_size) * self.height)
            frame.planes[1].update(bytes([128]) * chroma_size)
            frame.planes[2].update(bytes([128]) * chroma_size)
        # Drawn in place, into the frame's own luma plane; the stamp last, so nothing covers it.
        luma = np.frombuffer(frame.planes[0], np.uint8).reshape(self.height, luma_size)
        if self.grain:
            add_grain(luma, self.count)
        if self.stamp:
            draw_stamp(luma, int(time.time() * 1000))
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["whip", "offer"])
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--no-delete", action="store_true", help="vanish without DELETE")
    ap.add_argument("--h264", action="store_true", help="offer H.264 video only")
    ap.add_argument("--keyframes-on-request", action="store_true",
                    help="H.264: a keyframe only when the receiver asks for one")
    ap.add_argument("--colour", help="R,G,B: draw this colour instead of grey bars")
    ap.add_argument("--stamp", action="store_true", help="draw the wall-clock time into each frame")
    ap.add_argument("--grain", action="store_true", help="add a camera's noise to the picture")
    ap.add_argument("--bitrate", type=int, help="kb/s: hold the H.264 encoder at this bitrate")
    ap.add_argument("--say", action="append", default=[], help="a chat line to send")
    ap.add_argument("--say-after", type=float, default=0, help="seconds to wait before the first line")
    ap.add_argument("--say-when", type=int, default=0, help="wait for this many connected participants")
    ap.add_argument("--chat", action="store_true", help="open the chat channel (to hear lines)")
    args = ap.parse_args()
    if args.keyframes_on_request:
        keyframes_on_request()
    if args.bitrate:
        hold_h264_bitrate(args.bitrate * 1000)

    pc = RTCPeerConnection()
    colour = tuple(int(c) for c in args.colour.split(",")) if args.colour else None
    video = Pattern(args.width, args.height, colour, args.stamp, args.grain)
    sender = pc.addTrack(video)
    if args.h264:
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(h264)
    pc.addTrack(AudioStreamTrack())
    connected = asyncio.Event()
    heard = []
    channel = pc.createDataChannel("chat") if args.say or args.chat else None
    if channel:
        channel.on("message", lambda m: heard.append(json.loads(m) if isinstance(m, str) else None))

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    if args.mode == "whip":
        status, headers, answer = await loop.run_in_executor(
            None, http, "POST", args.url, pc.localDescription.sdp.encode(), "application/sdp"
        )
        assert status == 201, status
        location = headers.get("Location")
    else:
        body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
        _, _, text = await loop.run_in_executor(None, http, "POST", args.url, body, "application/json")
        answer, location = json.loads(text)["sdp"], None
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.wait_for(connected.wait(), 20)
    started = time.monotonic()
    # SIGTERM ends the sending early; the session still ends as usual (DELETE, the JSON line).
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def say():
        while channel.readyState != "open":
            await asyncio.sleep(0.05)
        if args.say_when:
            base, room = args.url.split("?")[0].split("/whip/")
            while True:
                _, _, text = await loop.run_in_executor(None, http, "GET", f"{base}/api/pipelines/{room}")
                present = json.loads(text).get("participants", [])
                if sum(1 for p in present if p["connected"]) >= args.say_when:
                    break
                await asyncio.sleep(0.1)
            # Their data channels open just after they connect.
            await asyncio.sleep(1)
        await asyncio.sleep(args.say_after)
        for line in args.say:
            await asyncio.sleep(1)
            channel.send(line)

    talking = asyncio.ensure_future(say()) if args.say else None
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except asyncio.TimeoutError:
        pass
    if talking:
        talking.cancel()
    sent = time.monotonic() - started
    report = await pc.getStats()
    bytes_sent = sum(getattr(s, "bytesSent", 0) for s in report.values() if s.type == "outbound-rtp")
    if location and not args.no_delete:
        base = args.url.split("/whip/")[0]
        await loop.run_in_executor(None, http, "DELETE", base + location)
    await pc.close()
    print(json.dumps({"seconds": sent, "width": args.width, "height": args.height, "frames": video.count,
                      "bytes_sent": bytes_sent, "location": location, "chat": heard}), flush=True)


asyncio.run(main())
