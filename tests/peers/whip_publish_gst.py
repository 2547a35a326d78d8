#!/usr/bin/python3
"""A plain GStreamer WHIP publisher (webrtcbin, Debian's GObject bindings): a live test pattern
(H.264, constrained baseline, in-band SPS/PPS) and, with --audio, a tone (Opus).

  /usr/bin/python3 tests/peers/whip_publish_gst.py URL [--width 320 --height 240 --fps 30]
      [--audio] [--duration S] [--ice-address IP]

Waits for ICE gathering to finish, POSTs the offer (`Content-Type: application/sdp`, CRLF line
endings: what simple-whip-server insists on), sets the answer, prints one JSON line
{"location": <absolute session URL>, "status": 201} and streams until --duration passes (0:
until stdin closes or SIGTERM), then DELETEs the session. Exits 1 with a message on stderr if
the POST fails or the connection fails. --ice-address pins ICE to one local address (webrtcbin
leaves loopback out, and on a machine with other interfaces it would gather those too).
"""
import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--audio", action="store_true")
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--ice-address")
    args = p.parse_args()

    Gst.init(None)
    desc = (
        f"webrtcbin name=webrtc bundle-policy=max-bundle "
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},"
        f"height={args.height},framerate={args.fps}/1 ! videoconvert ! queue "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        f"! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=102 "
        f"! application/x-rtp,media=video,encoding-name=H264,payload=102 ! webrtc. "
    )
    if args.audio:
        desc += (
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc "
            "! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 "
            "! webrtc. "
        )
    pipe = Gst.parse_launch(desc)
    webrtc = pipe.get_by_name("webrtc")
    loop = GLib.MainLoop()
    state = {"location": None, "code": 0}

    def fail(msg):
        print(f"whip_publish_gst: {msg}", file=sys.stderr, flush=True)
        state["code"] = 1
        loop.quit()

    i = 0
    while (t := webrtc.emit("get-transceiver", i)) is not None:
        t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        i += 1

    if args.ice_address:
        # webrtcbin 1.22 hands its agent out floating: Python's reference becomes the only
        # one, so keep it as long as the pipeline lives (and leave with os._exit, below,
        # before both drop it).
        ice_agent = webrtc.get_property("ice-agent")
        ice_agent.emit("add-local-ip-address", args.ice_address)

    def post_offer():
        sdp = webrtc.get_property("local-description").sdp.as_text()
        sdp = "\r\n".join(sdp.replace("\r\n", "\n").rstrip("\n").split("\n")) + "\r\n"
        req = urllib.request.Request(args.url, data=sdp.encode(), method="POST")
        req.add_header("Content-Type", "application/sdp")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, location, answer = resp.status, resp.headers.get("Location"), resp.read()
        except urllib.error.HTTPError as e:
            return fail(f"POST {args.url} answered {e.code}: {e.read().decode(errors='replace')}")
        except (OSError, urllib.error.URLError) as e:
            return fail(f"POST {args.url} failed: {e}")
        if status != 201:
            return fail(f"POST {args.url} answered {status}, not 201")
        state["location"] = urllib.parse.urljoin(args.url, location) if location else None
        _, msg = GstSdp.SDPMessage.new_from_text(answer.decode())
        webrtc.emit("set-remote-description",
                    GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg),
                    None)
        print(json.dumps({"location": state["location"], "status": status}), flush=True)
        return False

    posted = {"done": False}

    def on_gathering(*_):
        if (webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
                and not posted["done"] and webrtc.get_property("local-description")):
            posted["done"] = True
            GLib.idle_add(post_offer)

    def on_offer(promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        webrtc.emit("set-local-description", offer, None)
        GLib.idle_add(on_gathering)

    def on_negotiation_needed(_):
        webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    def on_connection_state(*_):
        st = webrtc.get_property("connection-state")
        if st == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(fail, "WebRTC connection failed")
        elif st == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            print(json.dumps({"connected": True}), flush=True)

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::connection-state", on_connection_state)

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            fail(f"pipeline error: {err.message} ({dbg})")

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    if args.duration > 0:
        GLib.timeout_add(int(args.duration * 1000), loop.quit)
    else:
        def watch_stdin():
            sys.stdin.buffer.read()
            GLib.idle_add(loop.quit)
        threading.Thread(target=watch_stdin, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: (loop.quit(), False)[1])

    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    if state["location"]:
        try:
            urllib.request.urlopen(urllib.request.Request(state["location"], method="DELETE"),
                                   timeout=5).read()
        except (OSError, urllib.error.URLError) as e:
            print(f"whip_publish_gst: DELETE {state['location']} failed: {e}", file=sys.stderr)
    pipe.set_state(Gst.State.NULL)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(state["code"])


if __name__ == "__main__":
    main()
