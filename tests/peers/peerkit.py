"""Shared by the test peers: keep aiortc's ICE on loopback, a tiny HTTP client, and the
time stamp that mediaweave's `stamp` hook draws (40 blocks of 24x24 pixels in the top-left
corner, milliseconds since the epoch, most significant bit first). Imports nothing outside
the standard library at the top, so system-Python peers (GObject bindings) can use it too."""
import urllib.request

STAMP_BITS, STAMP_BLOCK = 40, 24


def loopback_only():
    """Tests stay on loopback: gather host candidates on 127.0.0.1 only (aiortc peers)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def http(method, url, body=None, content_type=None):
    """(status, headers, text); resp.headers looks names up case-insensitively. Sends
    `Authorization: Bearer $MEDIAWEAVE_TOKEN` when that variable is set."""
    import os

    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if os.environ.get("MEDIAWEAVE_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["MEDIAWEAVE_TOKEN"])
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers, resp.read().decode()


def draw_stamp(luma, millis):
    """Draws `millis` into a luma plane (a numpy array, limited range: 16 black, 235 white)."""
    for bit in range(STAMP_BITS):
        on = (millis >> (STAMP_BITS - 1 - bit)) & 1
        luma[:STAMP_BLOCK, bit * STAMP_BLOCK:(bit + 1) * STAMP_BLOCK] = 235 if on else 16


def read_stamp(luma):
    """The milliseconds drawn into a luma plane (a numpy array; >= 128 is a 1)."""
    half = STAMP_BLOCK // 2
    value = 0
    for bit in range(STAMP_BITS):
        value = (value << 1) | int(luma[half, bit * STAMP_BLOCK + half] >= 128)
    return value
