#!/usr/bin/python3
"""Many RTSP or HLS clients of one stream in one process, for the benchmark's `reach` scenario.
The same commands as gst_viewers.py, on stdin, one JSON line answered per command:

  add N        start N more clients; answers {"viewers": total, "connected": n} once each new
               one has had a frame (or 20 s + 2 s per client have passed)
  measure S    count frames for S seconds; answers {"fps": [...], "kbps": [...]}
  quit         end every client and exit

  /usr/bin/python3 tests/peers/stream_clients.py rtsp|hls URL

Nothing is decoded (the clients' CPU stays small beside the server's, and is not counted):
  rtsp  rtspsrc protocols=tcp latency=0 ! rtph264depay ! h264parse ! fakesink sync=false
        (a session each: DESCRIBE, SETUP, PLAY, RTP interleaved on its TCP connection)
  hls   souphttpsrc ! hlsdemux ! tsdemux ! h264parse ! fakesink sync=true: a player's
        fetching (the playlist every target duration, each new segment once) at a player's
        pace (frames handed on in real time, so segments are fetched as they are needed).
        hlsdemux, not hlsdemux2: the newer one works only inside playbin3/urisourcebin
        ("Element requires a streams-aware context").
Frames are H.264 access units counted after the parser; kb/s are their bytes.
"""
import os
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peerkit import serve_client_commands  # noqa: E402

Gst.init(None)
PROBE_BUFFER = Gst.PadProbeType.BUFFER
PROBE_OK = Gst.PadProbeReturn.OK


class Client:
    def __init__(self, index, mode, url):
        self.frames = 0
        self.bytes = 0
        self.error = None
        if mode == "rtsp":
            line = (f"rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse "
                    "! video/x-h264,alignment=au ! fakesink name=sink sync=false async=false")
        else:
            line = (f"souphttpsrc location={url} ! hlsdemux ! tsdemux ! h264parse "
                    "! video/x-h264,alignment=au ! fakesink name=sink sync=true")
        self.pipeline = Gst.parse_launch(line)
        self.pipeline.set_name(f"client{index}")
        self.pipeline.get_by_name("sink").get_static_pad("sink").add_probe(PROBE_BUFFER, self.on_frame)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.pipeline.set_state(Gst.State.PLAYING)

    def on_frame(self, _pad, info):
        self.frames += 1
        self.bytes += info.get_buffer().get_size()
        return PROBE_OK

    def on_error(self, _bus, msg):
        err, _ = msg.parse_error()
        self.error = err.message

    def close(self):
        self.pipeline.set_state(Gst.State.NULL)


def main():
    mode, url = sys.argv[1], sys.argv[2]
    loop = GLib.MainLoop()
    threading.Thread(target=loop.run, daemon=True).start()
    serve_client_commands(lambda index: Client(index, mode, url), sys.stdin)
    loop.quit()

main()
