#!/usr/bin/python3
"""Many GStreamer webrtcbin viewers of one stream in one process, for the benchmark.

Each viewer offers (recvonly H.264), gets its answer over WHEP (mediaweave) or an aiortc-style
POST /offer, then depayloads the video without decoding it (so the viewers' own CPU stays
small next to the server's) and counts frames. Commands on stdin, one JSON line answered per
command on stdout:

  add N        connect N more viewers; answers {"viewers": total, "connected": n}
  measure S    count frames for S seconds; answers {"fps": [...], "kbps": [...]}
  keyframe S   each viewer asks for a keyframe (an RTCP PLI, as a browser that lost one
               sends); answers {"before": [...], "after": [...]}, the keyframes each had
               received, once each has a new one or after S seconds
  quit         end every viewer (WHEP: DELETE) and exit

  /usr/bin/python3 tests/peers/gst_viewers.py whep|offer URL [twcc]

VIEWER_ADDRESS (default 127.0.0.1) is the address they gather candidates on. PROFILE_LEVEL_ID
(default 42e01f, constrained baseline as browsers offer it) is the H.264 profile they offer:
webrtcsink wants exactly what x264enc writes (42c01f).
With `twcc` the viewers offer transport-wide congestion control (the header extension and its
feedback), as browsers do, so an adaptive service can estimate each one's link; they send
about as many RTCP packets a second as Chromium does.

webrtcbin 1.22 makes RSA DTLS certificates, which aiortc refuses; like mediaweave, these
viewers give it an ECDSA P-256 certificate and advertise its fingerprint.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402
from peerkit import http, serve_client_commands  # noqa: E402

Gst.init(None)
# Looked up once, here: PyGObject fills enum attributes in lazily, and two streaming threads
# doing that at once (two viewers' pads appearing together) can find one missing.
PAD_SRC = Gst.PadDirection.SRC
PROBE_BUFFER = Gst.PadProbeType.BUFFER
PROBE_OK = Gst.PadProbeReturn.OK
DELTA_UNIT = Gst.BufferFlags.DELTA_UNIT

VIDEO_CAPS = (
    "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)" + os.environ.get("PROFILE_LEVEL_ID", "42e01f")
)
TWCC = len(sys.argv) > 3 and sys.argv[3] == "twcc"
# How often a viewer sends its transport-wide feedback: every 100 ms, so that it sends as many
# RTCP packets as headless Chromium does watching the same 2 Mbit/s stream (both counted on the
# wire: Chromium 17 a second, these viewers 20; with 50 ms they sent 39, twice what the
# interval says). GStreamer's own default is one report per frame.
TWCC_FEEDBACK_INTERVAL = 100 * Gst.MSECOND
if TWCC:
    VIDEO_CAPS += (
        ",extmap-3=(string)http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01,"
        "rtcp-fb-transport-cc=(boolean)true"
    )


def ecdsa_certificate():
    """(certificate + key as one PEM, SHA-256 fingerprint of the certificate's DER)."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=mediaweave-bench", "-days", "30"],
            check=True, capture_output=True,
        )
        cert_pem, key_pem = open(cert).read(), open(key).read()
    body = "".join(line for line in cert_pem.splitlines() if not line.startswith("-----"))
    digest = hashlib.sha256(base64.b64decode(body)).hexdigest().upper()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return cert_pem + key_pem, fingerprint


class Viewer:
    def __init__(self, index, mode, url, pem, fingerprint):
        self.mode, self.url, self.pem, self.fingerprint = mode, url, pem, fingerprint
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.depay = None
        self.location = None
        self.error = None
        self.pipeline = Gst.Pipeline.new(f"viewer{index}")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", None)
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        self.webrtc.connect("deep-element-added", self.on_element)
        self.webrtc.connect("pad-added", self.on_pad)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.emit(
            "add-transceiver",
            GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
            Gst.Caps.from_string(VIDEO_CAPS),
        )
        # Held for the viewer's life: PyGObject drops a reference it does not own otherwise.
        self.agent = self.webrtc.get_property("ice-agent")
        # Candidates on loopback, or on VIEWER_ADDRESS (a viewer in a namespace of its own).
        self.agent.emit("add-local-ip-address", os.environ.get("VIEWER_ADDRESS", "127.0.0.1"))
        self.sent = False
        self.pipeline.set_state(Gst.State.PLAYING)
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_element(self, _bin, _sub, element):
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "dtlssrtpdec":
            element.set_property("pem", self.pem)
        if TWCC and factory is not None and factory.get_name() == "rtpsession":
            session = element.get_property("internal-session")
            session.set_property("twcc-feedback-interval", TWCC_FEEDBACK_INTERVAL)

    def on_offer(self, promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, None)

    def on_gathering(self, *_):
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.sent:
            self.sent = True
            sdp = self.webrtc.get_property("local-description").sdp.as_text()
            lines = [
                f"a=fingerprint:sha-256 {self.fingerprint}" if line.startswith("a=fingerprint:") else line
                for line in sdp.split("\r\n")
            ]
            threading.Thread(target=self.exchange, args=("\r\n".join(lines),), daemon=True).start()

    def exchange(self, offer):
        try:
            if self.mode == "whep":
                status, headers, answer = http("POST", self.url, offer.encode(), "application/sdp")
                self.location = headers.get("Location")
            else:
                body = json.dumps({"sdp": offer, "type": "offer"}).encode()
                status, _, text = http("POST", self.url, body, "application/json")
                answer = json.loads(text)["sdp"]
            _, message = GstSdp.SDPMessage.new_from_text(answer)
            desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
            self.webrtc.emit("set-remote-description", desc, None)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            self.error = str(e)

    def on_pad(self, _webrtc, pad):
        if pad.get_direction() != PAD_SRC:
            return
        depay = Gst.ElementFactory.make("rtph264depay", None)
        caps = Gst.ElementFactory.make("capsfilter", None)
        caps.set_property("caps", Gst.Caps.from_string("video/x-h264,alignment=au"))
        sink = Gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        sink.set_property("async", False)
        for e in (depay, caps, sink):
            self.pipeline.add(e)
            e.sync_state_with_parent()
        depay.link(caps)
        caps.link(sink)
        pad.link(depay.get_static_pad("sink"))
        caps.get_static_pad("src").add_probe(PROBE_BUFFER, self.on_frame)
        self.depay = depay

    def on_frame(self, _pad, info):
        buffer = info.get_buffer()
        self.frames += 1
        self.bytes += buffer.get_size()
        if not buffer.has_flags(DELTA_UNIT):
            self.keyframes += 1
        return PROBE_OK

    def ask_keyframe(self):
        """A keyframe request up from the depayloader: the RTP session sends it as a PLI."""
        if self.depay is not None:
            request = Gst.Structure.new_from_string("GstForceKeyUnit, all-headers=(boolean)false")
            self.depay.get_static_pad("sink").push_event(
                Gst.Event.new_custom(Gst.EventType.CUSTOM_UPSTREAM, request))

    def close(self):
        if self.location:
            base = self.url.split("/whep/")[0]
            try:
                http("DELETE", base + self.location)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.pipeline.set_state(Gst.State.NULL)


def main():
    mode, url = sys.argv[1], sys.argv[2]
    pem, fingerprint = ecdsa_certificate()
    loop = GLib.MainLoop()
    threading.Thread(target=loop.run, daemon=True).start()
    serve_client_commands(lambda index: Viewer(index, mode, url, pem, fingerprint), sys.stdin)
    loop.quit()

main()
