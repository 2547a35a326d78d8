#!/usr/bin/env python3
"""A stock aiortc publisher, used by the tests as a real third-party WHIP client.

Sends a generated test pattern (and silence) to a WHIP endpoint for a number of seconds after
the connection is up, then DELETEs the session. Prints one JSON line:
{"seconds": S, "width": W, "height": H, "frames": N}.

  whip URL [--seconds 5] [--width 640] [--height 480] [--no-delete]
  offer URL ...     an aiortc-style POST /offer ({"sdp", "type"}) instead of WHIP

--h264 offers only H.264 video; the JSON line then also has "bytes_sent" (RTP payload bytes,
from getStats). --keyframes-on-request makes the H.264 encoder send keyframes only when the
receiver asks (RTCP PLI/FIR), as browsers do; aiortc's VP8 encoder already does (a keyframe at
most every 3000 frames otherwise).
"""
import argparse
import asyncio
import json
import time

from peerkit import http, loopback_only

loopback_only()

import av  # noqa: E402
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack  # noqa: E402


def keyframes_on_request():
    """aiortc's H.264 encoder leaves libx264 to place keyframes itself (about one a second
    here); make it place none, so that only a PLI/FIR (on which aiortc forces one) starts one."""
    import aiortc.codecs.h264 as h264

    class Codec:
        """The codec context, with x264's own keyframes turned off whatever options aiortc sets."""

        def __init__(self, inner):
            object.__setattr__(self, "_inner", inner)

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def __setattr__(self, name, value):
            if name == "options":
                value = dict(value, **{"x264-params": "keyint=infinite:scenecut=0"})
            setattr(self._inner, name, value)

    class Av:
        def __getattr__(self, name):
            return getattr(av, name)

        class CodecContext:
            @staticmethod
            def create(*args, **kwargs):
                return Codec(av.CodecContext.create(*args, **kwargs))

    h264.av = Av()


class Pattern(VideoStreamTrack):
    """Moving grey bars, 30 frames per second."""

    def __init__(self, width, height):
        super().__init__()
        self.width, self.height, self.count = width, height, 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        row = bytes((x + self.count * 4) % 256 for x in range(frame.planes[0].line_size))
        frame.planes[0].update(row * self.height)
        chroma = bytes([128]) * (frame.planes[1].line_size * (self.height // 2))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
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
    args = ap.parse_args()
    if args.keyframes_on_request:
        keyframes_on_request()

    pc = RTCPeerConnection()
    video = Pattern(args.width, args.height)
    sender = pc.addTrack(video)
    if args.h264:
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(h264)
    pc.addTrack(AudioStreamTrack())
    connected = asyncio.Event()

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
    await asyncio.sleep(args.seconds)
    sent = time.monotonic() - started
    report = await pc.getStats()
    bytes_sent = sum(getattr(s, "bytesSent", 0) for s in report.values() if s.type == "outbound-rtp")
    if location and not args.no_delete:
        base = args.url.split("/whip/")[0]
        await loop.run_in_executor(None, http, "DELETE", base + location)
    await pc.close()
    print(json.dumps({"seconds": sent, "width": args.width, "height": args.height, "frames": video.count,
                      "bytes_sent": bytes_sent}), flush=True)


asyncio.run(main())
