"""Shared by the test peers: keep aiortc's ICE on loopback, and a tiny HTTP client."""
import urllib.request

import aioice.ice


def loopback_only():
    """Tests stay on loopback: gather host candidates on 127.0.0.1 only."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def http(method, url, body=None, content_type=None):
    """(status, headers, text); resp.headers looks names up case-insensitively."""
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers, resp.read().decode()
