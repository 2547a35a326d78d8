#!/usr/bin/python3
"""Plays an RTSP or HLS URL with GStreamer, decodes it and reads the time stamp that
mediaweave's `stamp` hook draws into each frame (peerkit.read_stamp): glass-to-glass latency,
now − stamp, per decoded frame. Prints one JSON line: the latencies, p50/p90/p99, frames read.

  /usr/bin/python3 tests/peers/stamp_reader.py URL [--frames N] [--seconds S] [--skip K]
                                                   [--sync] [--timeout T]

rtsp://  rtspsrc protocols=tcp latency=0 ! rtph264depay ! h264parse ! decodebin, frames
         taken by an appsink as they leave the decoder (sync=false).
*.m3u8   what a stock GStreamer player does: playbin, as gst-play-1.0 (--playbin3: playbin3,
         as gst-play-1.0 with GST_PLAY_USE_PLAYBIN3=1), with the appsink as its video sink,
         BUFFERING messages handled like gst-play-1.0 (paused below 100 %). In 1.22 playbin
         ends up with hlsdemux (hlsdemux2 ranks higher but refuses to work outside a
         streams-aware parent), playbin3 with hlsdemux2; "elements" says which. With --sync
         the appsink takes frames when the player shows them (its clock): what a viewer of
         that player sees; without, as they leave the decoder (a player catching up on
         what it downloaded at once: not steady).

--skip K leaves the first K stamped frames out (the start), then N frames or S seconds are
read, whichever ends first.

--edge (HLS) is no player: it polls the playlist every 50 ms and, for each segment it names
anew, notes when it appeared, downloads it and reads the stamps of its first and last frames.
"latencies_ms" are then each new segment's first frame's age once it is downloaded: the
glass-to-glass latency of a player that starts on the newest segment the moment it appears
and plays on in real time (the live edge; hls.js's default holds 3 target durations behind
it); "last_frame_age_ms" the age of each segment's last frame when the playlist names it (how
long segmenting and publishing took beyond the segment's own length).
"""
import os
import tempfile
import urllib.parse
import urllib.request
import argparse
import json
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402
from peerkit import STAMP_BITS, STAMP_BLOCK, read_stamp  # noqa: E402

Gst.init(None)


class Rows:
    """The top rows of a luma plane, indexed [row, column] as read_stamp wants (no numpy in the
    system Python)."""

    def __init__(self, data, stride):
        self.data, self.stride = data, stride

    def __getitem__(self, rc):
        row, col = rc
        return self.data[row * self.stride + col]


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p))]


class Reader:
    def __init__(self, args):
        self.args = args
        self.latencies = []
        self.decoded = 0
        self.skipped = 0
        self.unreadable = 0
        self.first_frame_ms = None
        self.buffering_pauses = 0
        self.error = None
        self.info = None
        self.started = time.monotonic()
        self.measuring_since = None
        self.done = threading.Event()
        self.loop = GLib.MainLoop()
        url = args.url
        self.sink = Gst.ElementFactory.make("appsink", None)
        self.sink.set_property("caps", Gst.Caps.from_string("video/x-raw,format=I420"))
        self.sink.set_property("sync", args.sync)
        self.sink.set_property("max-buffers", 4 if args.sync else 0)
        self.sink.set_property("emit-signals", True)
        self.sink.connect("new-sample", self.on_sample)
        if url.startswith("rtsp://"):
            self.pipeline = Gst.parse_launch(
                f"rtspsrc name=src location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse "
                "! decodebin ! videoconvert name=conv")
            self.pipeline.add(self.sink)
            self.pipeline.get_by_name("conv").link(self.sink)
            self.live = True
        else:
            self.pipeline = Gst.ElementFactory.make("playbin3" if args.playbin3 else "playbin", None)
            self.pipeline.set_property("uri", url)
            # Video only: the stream has no audio, and a sound card is not needed if it had.
            self.pipeline.set_property("audio-sink", Gst.ElementFactory.make("fakesink", None))
            self.pipeline.set_property("video-sink", self.sink)
            self.live = False
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)

    def on_message(self, _bus, msg):
        t = msg.type
        if t == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            self.error = f"{err.message} ({debug})"[:500]
            self.finish()
        elif t == Gst.MessageType.EOS:
            self.error = self.error or "end of stream"
            self.finish()
        elif t == Gst.MessageType.BUFFERING and not self.live:
            # As gst-play-1.0: pause until the queues are full again.
            percent = msg.parse_buffering()
            if percent < 100:
                if self.pipeline.get_state(0)[1] == Gst.State.PLAYING:
                    self.buffering_pauses += 1
                self.pipeline.set_state(Gst.State.PAUSED)
            else:
                self.pipeline.set_state(Gst.State.PLAYING)

    def on_sample(self, sink):
        now = time.time()
        sample = sink.emit("pull-sample")
        if sample is None or self.done.is_set():
            return Gst.FlowReturn.OK
        self.decoded += 1
        if self.first_frame_ms is None:
            self.first_frame_ms = (time.monotonic() - self.started) * 1000
        if self.info is None:
            self.info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        buf = sample.get_buffer()
        stride, offset = self.info.stride[0], self.info.offset[0]
        block = STAMP_BLOCK
        if self.info.width < STAMP_BITS * block:
            self.unreadable += 1
            return Gst.FlowReturn.OK
        data = buf.extract_dup(offset, stride * block)
        latency = (int(now * 1000) - read_stamp(Rows(data, stride), block)) % (1 << STAMP_BITS)
        if latency >= 60_000:  # not a stamp
            self.unreadable += 1
            return Gst.FlowReturn.OK
        if self.skipped < self.args.skip:
            self.skipped += 1
            return Gst.FlowReturn.OK
        if self.measuring_since is None:
            self.measuring_since = time.monotonic()
        self.latencies.append(latency)
        if len(self.latencies) >= self.args.frames or \
                time.monotonic() - self.measuring_since >= self.args.seconds:
            self.finish()
        return Gst.FlowReturn.OK

    def finish(self):
        if not self.done.is_set():
            self.done.set()
            GLib.idle_add(self.loop.quit)

    def run(self):
        GLib.timeout_add(int(self.args.timeout * 1000), self.on_timeout)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.error = "cannot start the pipeline"
        else:
            self.loop.run()
        seconds = time.monotonic() - self.measuring_since if self.measuring_since else None
        # The elements still in the pipeline (autoplugging drops the ones it tried and refused).
        kept = set()
        it = self.pipeline.iterate_recurse()
        while True:
            ok, element = it.next()
            if ok != Gst.IteratorResult.OK:
                break
            factory = element.get_factory()
            if factory is not None:
                kept.add(factory.get_name())
        self.pipeline.set_state(Gst.State.NULL)
        lat = self.latencies
        demuxers = sorted(e for e in kept if "demux" in e)
        return {
            "url": self.args.url, "sync": self.args.sync, "frames": len(lat), "decoded": self.decoded,
            "unreadable": self.unreadable, "first_frame_ms": self.first_frame_ms,
            "fps": len(lat) / seconds if seconds else None,
            "p50": percentile(lat, 0.5), "p90": percentile(lat, 0.9), "p99": percentile(lat, 0.99),
            "min": min(lat) if lat else None, "max": max(lat) if lat else None,
            "buffering_pauses": self.buffering_pauses, "elements": demuxers,
            "error": self.error, "latencies_ms": lat,
        }

    def on_timeout(self):
        self.error = self.error or "timed out"
        self.finish()
        return False


def segment_stamps(path):
    """The stamps of the first and last frames of an MPEG-TS segment file."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{path}" ! tsdemux ! h264parse ! avdec_h264 ! videoconvert '
        "! video/x-raw,format=I420 ! appsink name=sink sync=false")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    stamps, info = [], None
    while True:
        sample = sink.emit("try-pull-sample", 5 * Gst.SECOND)
        if sample is None:
            break
        if info is None:
            info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        data = sample.get_buffer().extract_dup(info.offset[0], info.stride[0] * STAMP_BLOCK)
        stamps.append(read_stamp(Rows(data, info.stride[0])))
    pipeline.set_state(Gst.State.NULL)
    return stamps


def live_edge(args):
    """--edge: see the module's description."""
    mod = 1 << STAMP_BITS

    def playlist():
        with urllib.request.urlopen(args.url, timeout=10) as resp:
            return [l.strip() for l in resp.read().decode().splitlines() if l.strip() and not l.startswith("#")]

    seen, segments, error = set(), [], None
    started = time.monotonic()
    try:
        seen.update(playlist())
    except OSError as e:
        error = str(e)
    with tempfile.TemporaryDirectory() as tmp:
        while error is None and len(segments) < args.segments and time.monotonic() - started < args.timeout:
            try:
                names = playlist()
            except OSError as e:
                error = str(e)
                break
            appeared = time.time()
            fresh = [n for n in names if n not in seen]
            seen.update(names)
            for name in fresh[-1:]:  # the newest only: a player at the edge skips to it
                with urllib.request.urlopen(urllib.parse.urljoin(args.url, name), timeout=10) as resp:
                    body = resp.read()
                downloaded = time.time()
                path = os.path.join(tmp, "segment.ts")
                with open(path, "wb") as f:
                    f.write(body)
                stamps = segment_stamps(path)
                if stamps:
                    segments.append({
                        "name": name, "frames": len(stamps), "bytes": len(body),
                        "first_frame_age_ms": (int(downloaded * 1000) - stamps[0]) % mod,
                        "last_frame_age_ms": (int(appeared * 1000) - stamps[-1]) % mod,
                        "download_ms": (downloaded - appeared) * 1000,
                    })
            time.sleep(0.05)
    lat = [s["first_frame_age_ms"] for s in segments]
    last = [s["last_frame_age_ms"] for s in segments]
    return {
        "url": args.url, "edge": True, "frames": len(lat), "segments": segments,
        "p50": percentile(lat, 0.5), "p90": percentile(lat, 0.9), "min": min(lat) if lat else None,
        "max": max(lat) if lat else None, "last_frame_age_ms": last,
        "last_frame_age_p50": percentile(last, 0.5), "error": error, "latencies_ms": lat,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--skip", type=int, default=0, help="stamped frames left out first")
    ap.add_argument("--sync", action="store_true", help="take frames when the player shows them")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--playbin3", action="store_true", help="HLS: playbin3 rather than playbin")
    ap.add_argument("--edge", action="store_true", help="HLS: the live edge, segment by segment")
    ap.add_argument("--segments", type=int, default=5, help="--edge: segments to read")
    args = ap.parse_args()
    result = live_edge(args) if args.edge else Reader(args).run()
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["frames"] else 1)


main()
