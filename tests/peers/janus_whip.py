#!/usr/bin/python3
"""Janus (SFU, Debian's 1.1.2) behind meetecho's simple-whip-server (its WHIP front end), in a
network namespace of its own, as a WHIP server for the tests. Whatever is published to its
WHIP endpoint comes back as plain RTP on local UDP ports (a Janus VideoRoom RTP forward).

  /usr/bin/python3 tests/peers/janus_whip.py --video-port 5004 [--audio-port 5006]
      [--subnet 10.77.0.0/24] [--endpoint test] [--video-pt 96] [--audio-pt 111]

Needs root and `scripts/setup --test` (Debian's janus; simple-whip-server with its npm
dependencies in target/tools/simple-whip-server). Python standard library only.

Why a namespace: Janus never gathers loopback candidates (not even with
ice_enforce_list = "lo"). So this makes a child network namespace joined to the caller's by a
veth pair: the caller's side gets .1 of --subnet, the namespace side .2; Janus (ICE pinned to
its veth, WebSocket API on .2:8188) and the WHIP server (.2:7080) run inside it. Two harnesses
can run at once in the same namespace with different --subnet values.

When ready it prints one JSON line on stdout, e.g.

  {"whip": "http://10.77.0.2:7080/whip/endpoint/test", "host_address": "10.77.0.1",
   "server_address": "10.77.0.2", "video_port": 5004, "audio_port": 5006,
   "video_caps": "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96",
   "audio_caps": "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"}

(audio_port and audio_caps are null without --audio-port), ~0.6-1 s after start. Then it runs
until its stdin closes (keep a pipe open to it; with stdin at /dev/null, until a signal) or it
gets SIGTERM/SIGINT/SIGHUP, and then stops Janus and the WHIP server and removes the veth pair
and the namespace. If the script is killed outright, its children die with it
(PR_SET_PDEATHSIG) and the namespace and veth pair go with them (only its temp work dir stays;
the next run removes it). On failure: a message on stderr naming what failed, with the tail of
the Janus and WHIP server logs, and exit status 1.

Publishing (RFC 9725 WHIP, with this server's quirks):
- POST the offer to the "whip" URL with `Content-Type: application/sdp` exactly (no
  parameters, else 406) and CRLF line endings (else 500); 201 with the answer. Put the
  candidates in the offer (wait for ICE gathering) -- no trickle needed.
- `Location` is relative (`/whip/resource/<endpoint>`): resolve it against the whip URL;
  DELETE it to stop. A second publisher while one is live gets 403.
- The publisher must gather ICE candidates on the host-side veth address ("host_address"):
  a peer pinned to 127.0.0.1 cannot reach Janus. In a namespace with only lo and this veth,
  webrtcbin/libnice gathers exactly that address by default.
- The room takes H.264 video (checked with constrained-baseline, packetization-mode=1) and
  Opus audio.

What arrives on the UDP ports (plain RTP, no SRTP):
- video on host_address:--video-port: H.264, RTP clock 90000, payload type --video-pt
  (default 96; Janus rewrites the publisher's PT to it), packetized by the publisher as it
  was (RFC 6184 packetization-mode=1: single NAL units, STAP-A and FU-A; SPS/PPS only if the
  publisher sends them in band, e.g. rtph264pay config-interval=-1). udpsrc caps:
  application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96
  then rtph264depay ! avdec_h264 (or h264parse). The room asks the publisher for a keyframe
  every 2 s (fir_freq = 2), so a receiver that starts late decodes within ~2 s.
- audio (if --audio-port and the publisher sends audio) on --audio-port: Opus, 48000,
  payload type --audio-pt (default 111).
- The SSRC is random per publish session.
"""
import argparse
import ctypes
import glob
import ipaddress
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHIP_SERVER_DIR = os.path.join(ROOT, "target", "tools", "simple-whip-server")
ROOM = 1234
JANUS_WS_PORT = 8188


class Failure(Exception):
    pass


def log(msg):
    print(f"janus_whip: {msg}", file=sys.stderr, flush=True)


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: our children die when we do
    os.setpgid(0, 0)  # and a ^C in the caller's terminal reaches only us


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)\n"


def remove_stale_work_dirs():
    """Work dirs of harnesses that were killed outright (SIGKILL leaves them behind)."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "janus-whip-*-*")):
        m = re.match(r"janus-whip-(\d+)-", os.path.basename(d))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(d, ignore_errors=True)


def http(method, url, body=None, content_type=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


class Harness:
    def __init__(self, args):
        self.args = args
        net = ipaddress.ip_network(args.subnet, strict=False)
        if net.version != 4 or net.num_addresses < 4:
            raise Failure(f"--subnet {args.subnet}: need an IPv4 subnet of at least 4 addresses")
        self.net = net
        self.host_ip = str(net.network_address + 1)
        self.ns_ip = str(net.network_address + 2)
        tag = os.getpid()
        self.host_if = f"jwh{tag}"
        self.ns_if = f"jwn{tag}"
        self.work = None
        self.holder = None
        self.janus = None
        self.whip = None
        self.veth = False

    # ---- set-up -------------------------------------------------------------------------

    def check_prerequisites(self):
        if os.geteuid() != 0:
            raise Failure("needs root (network namespace and veth pair)")
        for tool in ("janus", "node", "unshare", "nsenter", "ip"):
            if not shutil.which(tool):
                raise Failure(f"`{tool}` not found (run scripts/setup --test)")
        for f in ("src/server.js", "src/whip-janus.js", "node_modules/express/package.json"):
            if not os.path.exists(os.path.join(WHIP_SERVER_DIR, f)):
                raise Failure(f"simple-whip-server not installed: {WHIP_SERVER_DIR}/{f} missing "
                              "(run scripts/setup --test)")
        libdirs = [os.path.dirname(os.path.dirname(p)) for p in
                   glob.glob("/usr/lib/*/janus/plugins/libjanus_videoroom.so")
                   + glob.glob("/usr/lib/janus/plugins/libjanus_videoroom.so")
                   + glob.glob("/opt/janus/lib/janus/plugins/libjanus_videoroom.so")]
        if not libdirs:
            raise Failure("Janus' videoroom plugin (libjanus_videoroom.so) not found")
        self.janus_lib = libdirs[0]
        # Two harnesses on one subnet in one namespace would route into each other.
        for line in run("ip", "-o", "-4", "addr", "show").splitlines():
            m = re.search(r"inet (\S+)", line)
            if m and ipaddress.ip_interface(m.group(1)).network.overlaps(self.net):
                raise Failure(f"--subnet {self.net} overlaps an address already here: "
                              f"{line.strip()}")

    def make_namespace(self):
        # A process of its own holds the namespace; Janus and the WHIP server join it.
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while True:
            if self.holder.poll() is not None:
                raise Failure("`unshare -n` failed (cannot make a network namespace)")
            try:
                if os.readlink(f"/proc/{self.holder.pid}/ns/net") != mine:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failure("`unshare -n` did not make a network namespace within 5 s")
            time.sleep(0.01)
        pid = str(self.holder.pid)
        run("ip", "link", "add", self.host_if, "type", "veth",
            "peer", "name", self.ns_if, "netns", pid)
        self.veth = True
        prefix = self.net.prefixlen
        run("ip", "addr", "add", f"{self.host_ip}/{prefix}", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        ns = ("nsenter", "-t", pid, "-n")
        run(*ns, "ip", "link", "set", "lo", "up")
        run(*ns, "ip", "addr", "add", f"{self.ns_ip}/{prefix}", "dev", self.ns_if)
        run(*ns, "ip", "link", "set", self.ns_if, "up")
        # Janus picks its address at start-up among interfaces that are up and running:
        # wait for the carrier (our end is "up" once both ends are).
        deadline = time.monotonic() + 5
        while True:
            # (not /sys/class/net: sysfs may belong to another network namespace)
            if "LOWER_UP" in run("ip", "-o", "link", "show", "dev", self.host_if):
                break
            if time.monotonic() > deadline:
                raise Failure(f"veth pair {self.host_if}/{self.ns_if} has no carrier after 5 s")
            time.sleep(0.01)

    def write_janus_config(self):
        conf = os.path.join(self.work, "janus")
        for d in ("conf", "plugins", "transports", "events", "loggers"):
            os.makedirs(os.path.join(conf, d))
        # Only the videoroom plugin and the WebSocket transport are loaded.
        os.symlink(os.path.join(self.janus_lib, "plugins", "libjanus_videoroom.so"),
                   os.path.join(conf, "plugins", "libjanus_videoroom.so"))
        os.symlink(os.path.join(self.janus_lib, "transports", "libjanus_websockets.so"),
                   os.path.join(conf, "transports", "libjanus_websockets.so"))
        files = {
            "janus.jcfg": f"""
general: {{
  configs_folder = "{conf}/conf"
  plugins_folder = "{conf}/plugins"
  transports_folder = "{conf}/transports"
  events_folder = "{conf}/events"
  loggers_folder = "{conf}/loggers"
  debug_level = 4
  debug_timestamps = true
  debug_colors = false
  server_name = "mediaweave-test-janus"
  interface = "{self.ns_ip}"
  hide_dependencies = true
}}
certificates: {{
}}
media: {{
  ipv6 = false
}}
nat: {{
  nice_debug = false
  ignore_mdns = true
  ice_enforce_list = "{self.ns_if}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
  broadcast = false
}}
""",
            "janus.transport.websockets.jcfg": f"""
general: {{
  json = "plain"
  ws = true
  ws_port = {JANUS_WS_PORT}
  ws_ip = "{self.ns_ip}"
  wss = false
}}
admin: {{
  admin_ws = false
  admin_wss = false
}}
""",
            "janus.plugin.videoroom.jcfg": f"""
general: {{
}}
room-{ROOM}: {{
  description = "mediaweave tests"
  publishers = 3
  bitrate = 0
  fir_freq = 2
  videocodec = "h264"
  audiocodec = "opus"
  record = false
}}
""",
        }
        for name, text in files.items():
            with open(os.path.join(conf, "conf", name), "w") as f:
                f.write(text.lstrip())
        return os.path.join(conf, "conf")

    def write_whip_server(self):
        src = os.path.join(self.work, "whip", "src")
        os.makedirs(src)
        shutil.copy(os.path.join(WHIP_SERVER_DIR, "src", "server.js"), src)
        with open(os.path.join(WHIP_SERVER_DIR, "src", "whip-janus.js")) as f:
            code = f.read()
        # Its rtp_forward keeps the publisher's payload types; ask Janus for fixed ones
        # (`pt` of each stream of a multistream rtp_forward) so the receiver's caps are known.
        code, n_video = re.subn(r"(\n(\s*)port: recipient\.videoPort,)",
                                r"\1\n\2pt: recipient.videoPt,", code)
        code, n_audio = re.subn(r"(\n(\s*)port: recipient\.audioPort,)",
                                r"\1\n\2pt: recipient.audioPt,", code)
        if (n_video, n_audio) != (1, 1):
            raise Failure("simple-whip-server's whip-janus.js is not the version this harness "
                          "knows (cannot set the RTP forward's payload types)")
        with open(os.path.join(src, "whip-janus.js"), "w") as f:
            f.write(code)
        with open(os.path.join(src, "config.js"), "w") as f:
            f.write("module.exports = " + json.dumps({
                "janus": {"address": f"ws://{self.ns_ip}:{JANUS_WS_PORT}"},
                "port": self.args.whip_port,
                "rest": "/whip",
                "allowTrickle": True,
                "strictETags": False,
                "iceServers": [],
            }, indent=1) + ";\n")
        return src

    def spawn(self, cmd, logname, cwd=None, env=None):
        logf = open(os.path.join(self.work, logname), "w")
        try:
            return subprocess.Popen(
                ["nsenter", "-t", str(self.holder.pid), "-n", *cmd],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, preexec_fn=_die_with_parent)
        finally:
            logf.close()

    def wait_for(self, what, proc, logname, probe, deadline):
        while True:
            if proc.poll() is not None:
                raise Failure(f"{what} exited with status {proc.returncode} while starting",
                              logname)
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise Failure(f"{what} not ready within {self.args.timeout} s", logname)
            time.sleep(0.05)

    def start(self):
        t0 = time.monotonic()
        deadline = t0 + self.args.timeout
        self.check_prerequisites()
        remove_stale_work_dirs()
        self.work = tempfile.mkdtemp(prefix=f"janus-whip-{os.getpid()}-")
        self.make_namespace()
        conf = self.write_janus_config()
        self.janus = self.spawn(["janus", "-F", conf, "-C", os.path.join(conf, "janus.jcfg"),
                                 "-o"], "janus.log", cwd=self.work)

        def ws_up():
            with socket.create_connection((self.ns_ip, JANUS_WS_PORT), timeout=0.5):
                return True

        self.wait_for("Janus (WebSocket API)", self.janus, "janus.log", ws_up, deadline)
        src = self.write_whip_server()
        env = dict(os.environ, NODE_PATH=os.path.join(WHIP_SERVER_DIR, "node_modules"),
                   DEBUG="whip:*,janus:*,-whip:debug,-janus:debug,-janus:vdebug",
                   DEBUG_COLORS="no", NODE_ENV="production", FORCE_COLOR="0")
        self.whip = self.spawn(["node", os.path.join(src, "server.js")], "whip-server.log",
                               cwd=os.path.dirname(src), env=env)
        base = f"http://{self.ns_ip}:{self.args.whip_port}/whip"
        self.wait_for("simple-whip-server", self.whip, "whip-server.log",
                      lambda: http("GET", base + "/healthcheck", timeout=0.5)[0] == 200,
                      deadline)
        recipient = {"host": self.host_ip, "videoPort": self.args.video_port,
                     "videoPt": self.args.video_pt}
        if self.args.audio_port:
            recipient.update(audioPort=self.args.audio_port, audioPt=self.args.audio_pt)
        body = json.dumps({"id": self.args.endpoint, "room": ROOM, "recipient": recipient,
                           "label": f"mediaweave test {self.args.endpoint}"}).encode()
        try:
            status, text = http("POST", base + "/create", body, "application/json")
        except (OSError, urllib.error.URLError) as e:
            raise Failure(f"creating the WHIP endpoint (POST {base}/create) failed: {e}",
                          "whip-server.log")
        if status != 200:
            raise Failure(f"POST {base}/create answered {status}: {text}", "whip-server.log")
        ready = {
            "whip": f"{base}/endpoint/{self.args.endpoint}",
            "host_address": self.host_ip,
            "server_address": self.ns_ip,
            "video_port": self.args.video_port,
            "audio_port": self.args.audio_port or None,
            "video_caps": "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,"
                          f"payload={self.args.video_pt}",
            "audio_caps": "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,"
                          f"payload={self.args.audio_pt}" if self.args.audio_port else None,
        }
        print(json.dumps(ready), flush=True)
        log(f"ready in {time.monotonic() - t0:.2f} s (work dir {self.work})")

    # ---- running and stopping -----------------------------------------------------------

    def serve(self):
        sel = selectors.DefaultSelector()
        stdin_open = True
        try:
            sel.register(sys.stdin.buffer.raw, selectors.EVENT_READ)
        except (ValueError, OSError):
            stdin_open = False  # no usable stdin: run until a signal
        while True:
            if stdin_open:
                for _key, _ in sel.select(timeout=0.25):
                    if not os.read(sys.stdin.fileno(), 4096):
                        return  # stdin closed: the caller is done
            else:
                time.sleep(0.25)
            for what, proc, logname in (("Janus", self.janus, "janus.log"),
                                        ("simple-whip-server", self.whip, "whip-server.log")):
                if proc.poll() is not None:
                    raise Failure(f"{what} exited with status {proc.returncode}", logname)

    def stop(self):
        for proc in (self.whip, self.janus):
            if proc and proc.poll() is None:
                proc.terminate()
        for proc in (self.whip, self.janus):
            if proc:
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.holder and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()
        if self.veth:
            # Usually gone already with the namespace (deleting one end deletes the pair).
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        if self.work and not self.args.keep_work_dir:
            shutil.rmtree(self.work, ignore_errors=True)

    def report(self, failure):
        log(f"FAILED: {failure.args[0]}")
        if not self.work:
            return
        lognames = failure.args[1:] or ("janus.log", "whip-server.log")
        for name in dict.fromkeys((*lognames, "janus.log", "whip-server.log")):
            path = os.path.join(self.work, name)
            if os.path.exists(path):
                sys.stderr.write(f"---- last lines of {name} ----\n{tail(path)}")
        sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video-port", type=int, required=True,
                   help="UDP port (on the host-side address) the video RTP goes to")
    p.add_argument("--audio-port", type=int, default=0,
                   help="UDP port for the audio RTP (default: audio is not forwarded)")
    p.add_argument("--subnet", default="10.77.0.0/24",
                   help="IPv4 subnet of the veth pair: .1 here, .2 in Janus' namespace")
    p.add_argument("--endpoint", default="test", help="WHIP endpoint id (default: test)")
    p.add_argument("--whip-port", type=int, default=7080)
    p.add_argument("--video-pt", type=int, default=96, help="payload type of the forwarded video")
    p.add_argument("--audio-pt", type=int, default=111, help="payload type of the forwarded audio")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for readiness")
    p.add_argument("--keep-work-dir", action="store_true",
                   help="keep the temporary configs and logs (path printed on stderr)")
    args = p.parse_args()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    h = Harness(args)
    code = 0
    try:
        h.start()
        h.serve()
    except KeyboardInterrupt:
        pass
    except Failure as e:
        h.report(e)
        code = 1
    except Exception as e:  # noqa: BLE001 -- name what broke, then clean up
        h.report(Failure(f"{type(e).__name__}: {e}"))
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        h.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
