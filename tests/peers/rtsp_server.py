#!/usr/bin/python3
"""A real RTSP server for the tests (GStreamer's gst-rtsp-server, through Debian's GObject
bindings): serves a live H.264 + AAC test stream at rtsp://127.0.0.1:PORT/test.

  /usr/bin/python3 tests/peers/rtsp_server.py PORT
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph264pay name=pay0 pt=96 "
    "audiotestsrc is-live=true ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
