#!/usr/bin/env python3
"""The harness behind scripts/bench: every scenario against mediaweave and, beside it, the peer
users would otherwise pick, on this machine in one run. Writes target/bench/results.md (a table
with ratios), results.json (every figure) and results.png (latency CDF; CPU against viewers).

CPU is the service's own (its process and children, from /proc), never the viewers', the
publisher's or the harness's. A benchmark, not a test: nothing here passes or fails on a figure.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "tests" / "peers"
OUT = ROOT / "target" / "bench"
VENV_PYTHON = str(ROOT / ".venv" / "bin" / "python")
SYSTEM_PYTHON = "/usr/bin/python3"
TICKS = os.sysconf("SC_CLK_TCK")

# What the product should show (issue: "Targets").
TARGETS = {
    "latency_p50": 80, "latency_p99": 150, "ttff_p50": 300, "per_viewer_cpu": 0.3,
    "per_viewer_rss": 1.5, "most_viewers": 100,
    "per_viewer_ratio": 10, "recording_cpu": 5, "hook_overhead": 10, "service_overhead": 5,
    "external_hook_ratio": 0.5,
    "relay_added_p50": 10, "relay_per_viewer_cpu": 0.5, "relay_per_viewer_rss": 3,
    "room_cpu": 15, "room_added_p50": 10,
    "reach_rtsp_client_cpu": 0.3, "reach_hls_p50": 3000,
    "adaptive_cpu_ratio": 2.5, "adaptive_shaped_fps": 25,
}


def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes and /proc

def descendants(pid):
    """pid and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def thread_seconds(pids):
    """CPU seconds of every thread of `pids`, by (pid, tid): (thread name, seconds). From
    schedstat (nanoseconds) where the kernel has it: /proc's clock ticks (10 ms) would make a
    thread's CPU over a 2 s window ± 0.5 % of a core, and there are dozens of threads."""
    found = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
                fields = text.rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / TICKS
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        seconds = int(f.read().split()[0]) / 1e9
                except (OSError, IndexError, ValueError):
                    pass
                found[(pid, tid)] = (text[text.index("(") + 1:text.rindex(")")], seconds)
            except (OSError, IndexError, ValueError):
                pass
    return found


class Window:
    """CPU (% of one core) and RSS of process trees between start() and stop(); with
    threads=True also each thread name's CPU ("threads": {name: %})."""

    def __init__(self, *roots, threads=False):
        self.roots = roots
        self.threads = threads

    def pids(self):
        return [p for r in self.roots for p in descendants(r)]

    def start(self):
        self.t0 = time.monotonic()
        pids = self.pids()
        self.c0 = {p: cpu_seconds([p]) for p in pids}
        self.t0_threads = thread_seconds(pids) if self.threads else {}
        return self

    def stop(self):
        # A process that started meanwhile counts from zero; one that ended is gone.
        pids = self.pids()
        now = {p: cpu_seconds([p]) for p in pids}
        elapsed = time.monotonic() - self.t0
        used = sum(v - self.c0.get(p, 0.0) for p, v in now.items())
        result = {"cpu": 100 * used / elapsed, "rss_mb": rss_mb(list(now)), "seconds": elapsed}
        if self.threads:
            by_name = {}
            for key, (name, seconds) in thread_seconds(pids).items():
                before = self.t0_threads.get(key, (name, 0.0))[1]
                by_name[name] = by_name.get(name, 0.0) + 100 * (seconds - before) / elapsed
            result["threads"] = {k: round(v, 3) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]) if v > 0}
        return result


def measure(seconds, *roots, threads=False):
    w = Window(*roots, threads=threads).start()
    time.sleep(seconds)
    return w.stop()


_NEXT_PORT = [0]


def free_port():
    """A TCP port on loopback free a moment ago, given out once, and outside the kernel's
    ephemeral range (32768-60999), so that no port the kernel picks itself takes it first."""
    start = (os.getpid() % 600) * 20
    while _NEXT_PORT[0] < 12000:
        port = 20000 + (start + _NEXT_PORT[0]) % 12000
        _NEXT_PORT[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left on loopback")


def http_json(url, method="GET"):
    import urllib.request

    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read().decode() or "null")


def wait_for(what, timeout, check):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not ready yet
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Serve:
    """`mediaweave serve` with the given pipelines, ICE on loopback."""

    def __init__(self, binary, pipelines, workdir, extra=(), listen="127.0.0.1:0"):
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        (self.dir / "pipelines").mkdir()
        for name, text in pipelines.items():
            (self.dir / "pipelines" / f"{name}.toml").write_text(text)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", listen, "--ice-address", "127.0.0.1",
             "--pipelines", str(self.dir / "pipelines"), "--recordings", str(self.dir / "recordings"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()
        self.base = line.strip().rsplit(" ", 1)[-1]
        if not self.base.startswith("http://"):
            raise RuntimeError(f"mediaweave serve printed {line!r}")
        for name in pipelines:
            wait_for(f"{name} playing", 30,
                     lambda n=name: http_json(f"{self.base}/api/pipelines/{n}")["state"] == "playing")

    def close(self):
        stop(self.proc)


class AiortcServer:
    def __init__(self, mode, extra=()):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [VENV_PYTHON, str(PEERS / "aiortc_server.py"), mode, "--port", str(self.port), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"aiortc server printed {line!r}")
        self.url = f"http://127.0.0.1:{self.port}/offer"

    def close(self):
        stop(self.proc)


def aiortc_view(args, timeout):
    out = subprocess.run([VENV_PYTHON, str(PEERS / "aiortc_viewer.py"), *args],
                         capture_output=True, text=True, timeout=timeout)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"viewer printed nothing: {out.stderr[-500:]}")
    return json.loads(lines[-1])


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p))]


# ---------------------------------------------------------------------------------------------
# Pipelines

def stream_toml(stamp=False, max_viewers=64):
    text = f"""[source]
kind = "test"
pattern = "ball"
width = 1280
height = 720
framerate = 30
clock = false
audio = false

[encode]
bitrate = 2000

[[output]]
kind = "webrtc"
max_viewers = {max_viewers}
"""
    if stamp:
        text += '\n[[hook]]\nkind = "rust"\nname = "stamp"\nmode = "transform"\nformat = "I420"\n'
    return text


INBOX = '[source]\nkind = "webrtc"\n\n[[output]]\nkind = "record"\nsegment = "10m"\n'

# Relays one WebRTC publisher to WebRTC viewers as it was sent (nothing decoded).
RELAY = '[source]\nkind = "webrtc"\ncodec = "h264"\n\n[[output]]\nkind = "webrtc"\n'

# What the relay scenario's aiortc publisher sends, and its direct stand-in draws: 1280x720 at
# 30 fps, moving grey bars with a camera's noise (so that H.264 needs the bitrate it is given),
# stamped with the wall-clock time as each frame goes to the encoder; H.264 held at 2 Mb/s
# (aiortc would otherwise follow each receiver's estimate, and the paths would differ).
RELAY_PICTURE = ["--width", "1280", "--height", "720", "--grain"]
RELAY_H264 = ["--h264", "--bitrate", "2000"]


def hook_toml(hook, pattern="ball"):
    return f"""[source]
kind = "test"
pattern = "{pattern}"
width = 1920
height = 1080
framerate = 30
clock = false
audio = false
{hook}"""


RAW_LAUNCH = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 "
              "! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 ! fakesink")


# ---------------------------------------------------------------------------------------------
# Scenarios

def scenario_latency(cfg, binary, work):
    frames = cfg["latency_frames"]
    result = {}
    server = Serve(binary, {"live": stream_toml(stamp=True)}, work)
    try:
        v = aiortc_view(["whep", f"{server.base}/whep/live", "--frames", str(frames + 30), "--stamps",
                         "--timeout", str(frames / 20 + 30)], frames / 20 + 60)
        result["mediaweave"] = v["latencies_ms"][30:]
    finally:
        server.close()
    peer = AiortcServer("stream")
    try:
        v = aiortc_view(["offer", peer.url, "--frames", str(frames + 30), "--stamps",
                         "--timeout", str(frames / 20 + 30)], frames / 20 + 60)
        result["aiortc"] = v["latencies_ms"][30:]
    finally:
        peer.close()
    return result


def scenario_ttff(cfg, binary, work):
    trials = cfg["ttff_trials"]
    result = {"whep": [], "ws": [], "aiortc": []}
    server = Serve(binary, {"live": stream_toml()}, work)
    try:
        ws = server.base.replace("http://", "ws://") + "/ws"
        for _ in range(trials):
            for kind, args in (("whep", ["whep", f"{server.base}/whep/live"]), ("ws", ["ws", ws, "live"])):
                v = aiortc_view([*args, "--frames", "1", "--timeout", "20"], 40)
                if v.get("ttff_ms") is not None:
                    result[kind].append(v["ttff_ms"])
    finally:
        server.close()
    peer = AiortcServer("stream")
    try:
        for _ in range(trials):
            v = aiortc_view(["offer", peer.url, "--frames", "1", "--timeout", "20"], 40)
            if v.get("ttff_ms") is not None:
                result["aiortc"].append(v["ttff_ms"])
            time.sleep(0.3)  # let the closed peer go before the next one
    finally:
        peer.close()
    return result


def ask_clients(proc, cmd):
    """One command to a process of stream clients (gst_viewers.py, stream_clients.py): its
    one-line JSON answer."""
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"viewers ended at {cmd!r}")
    return json.loads(line)


def viewers_run(root_pid, mode, url, counts, window, script="gst_viewers.py", baseline=True, threads=False):
    """Viewers (clients of `script`: gst_viewers.py, or stream_clients.py for RTSP and HLS)
    added up to each of `counts`: the service's CPU and RSS over `window` seconds at each,
    with each viewer's fps and kb/s; first with none, unless not `baseline`. With `threads`,
    each row also has the CPU by thread name and "serving_cpu" (serving())."""
    viewers = subprocess.Popen([SYSTEM_PYTHON, str(PEERS / script), mode, url],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    rows, have = [], 0

    def ask(cmd):
        return ask_clients(viewers, cmd)

    try:
        if baseline:
            m = measure(window, root_pid, threads=threads)
            rows.append({"viewers": 0, "cpu": m["cpu"], "rss_mb": m["rss_mb"], "fps": [], **serving(m)})
        for n in counts:
            added = ask(f"add {n - have}")
            have = n
            time.sleep(1)
            w = Window(root_pid, threads=threads).start()
            fps = ask(f"measure {window}")
            m = w.stop()
            rows.append({"viewers": n, "connected": added["connected"], "cpu": m["cpu"],
                         "rss_mb": m["rss_mb"], "fps": fps["fps"], "kbps": fps["kbps"], **serving(m)})
            log(f"  {n} {mode} viewers: cpu {m['cpu']:.1f}%, fps min {min(fps['fps'] or [0]):.1f}")
    except (RuntimeError, ValueError) as e:
        log(f"  stopped early: {e}")
    finally:
        try:
            viewers.stdin.write("quit\n")
            viewers.stdin.flush()
            viewers.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            viewers.kill()
    return rows


# The threads of a `test` source pipeline that draw and encode the picture (x264's own threads
# take the name of the thread that starts them): what they do does not depend on viewers, and
# their CPU swings by a few % of a core from one window to the next.
PICTURE_THREADS = ("source:src", "video_encode_qu")


def serving(m):
    """A Window's figures with threads: the CPU by thread, and "serving_cpu", the CPU of the
    service's threads but its PICTURE_THREADS (what viewers can cost, without the encoder's
    swings). Threads that ended within the window are not in it (they are in "cpu")."""
    if "threads" not in m:
        return {}
    serving_cpu = sum(v for k, v in m["threads"].items() if k not in PICTURE_THREADS)
    return {"threads": m["threads"], "serving_cpu": serving_cpu}


def slope(rows, key="cpu"):
    """Least-squares growth of `key` per added viewer (CPU: % of a core; RSS: MB), over the rows
    where every viewer still got at least 90 % of the frames (past that the server is
    saturated, not serving more)."""
    pts = [(r["viewers"], r[key]) for r in rows
           if r["viewers"] > 0 and r["fps"] and min(r["fps"]) >= 27]
    if len(pts) < 2:
        return None
    mx = statistics.mean(x for x, _ in pts)
    my = statistics.mean(y for _, y in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def adaptive_toml():
    """The viewers' stream with a ladder, and a picture (bars and a clock) that needs the top
    rung's 2 Mb/s: the ball on black takes a few hundred kb/s, which fits a slow link as it is."""
    return (stream_toml(max_viewers=64)
            .replace("bitrate = 2000\n", 'bitrate = 2000\nladder = "auto"\n')
            .replace('pattern = "ball"', 'pattern = "smpte"')
            .replace("clock = false", "clock = true"))


class ShapedLink:
    """A network namespace reached over a veth pair whose egress toward it is shaped with tbf:
    one viewer's slow link."""

    def __init__(self, i, rate):
        self.ns, self.veth, peer = f"mwbench{i}", f"mwb{i}a", f"mwb{i}b"
        self.host, self.viewer = f"10.202.{i}.1", f"10.202.{i}.2"
        viewer = self.viewer
        inside = ["ip", "netns", "exec", self.ns]
        for cmd in (["ip", "netns", "add", self.ns],
                    ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
                    ["ip", "link", "set", peer, "netns", self.ns],
                    ["ip", "addr", "add", f"{self.host}/24", "dev", self.veth],
                    ["ip", "link", "set", self.veth, "up"],
                    inside + ["ip", "addr", "add", f"{viewer}/24", "dev", peer],
                    inside + ["ip", "link", "set", peer, "up"],
                    inside + ["ip", "link", "set", "lo", "up"],
                    ["tc", "qdisc", "add", "dev", self.veth, "root", "tbf", "rate", rate,
                     "burst", "20kb", "latency", "100ms"]):
            subprocess.run(cmd, check=True, capture_output=True)

    def close(self):
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def adaptive_watch(cfg, total, links, fast_url, slow_url, pid, procs, env=None):
    """The adaptive scenario's viewers of one service: `total` GStreamer viewers offering TWCC,
    the fast ones at `fast_url`, one behind each of `links` at `slow_url(link)`; once they
    settled, the service's CPU (process `pid`) and each one's fps."""
    shaped, window = len(links), cfg["window"]

    def viewers(url, prefix=(), address="127.0.0.1"):
        p = subprocess.Popen([*prefix, SYSTEM_PYTHON, str(PEERS / "gst_viewers.py"), "whep", url, "twcc"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, **(env or {}), "VIEWER_ADDRESS": address})
        procs.append(p)
        return p

    fast = viewers(fast_url)
    ask_clients(fast, f"add {total - shaped}")
    slow = [viewers(slow_url(link), ("ip", "netns", "exec", link.ns), link.viewer) for link in links]
    for p in slow:
        ask_clients(p, "add 1")
    time.sleep(cfg["adaptive_settle"])
    answers = {}

    def measure_viewers(key, p):
        answers[key] = ask_clients(p, f"measure {window}")

    threads = [threading.Thread(target=measure_viewers, args=(k, p))
               for k, p in [("fast", fast)] + [(f"slow{i}", p) for i, p in enumerate(slow)]]
    w = Window(pid, threads=True).start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = w.stop()
    fast_fps = answers.get("fast", {}).get("fps", [])
    slow_fps = [f for k, a in answers.items() if k != "fast" for f in a.get("fps", [])]
    slow_kbps = [k for key, a in answers.items() if key != "fast" for k in a.get("kbps", [])]
    return m, fast_fps, slow_fps, slow_kbps


def quit_clients(procs):
    for p in procs:
        try:
            p.stdin.write("quit\n")
            p.stdin.flush()
            p.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
    procs.clear()


# webrtcsink's source: the adaptive pipeline's picture (bars and a clock, 1280x720 at 30 fps).
WEBRTCSINK_SOURCE = ("videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=1280,height=720,"
                     "framerate=30/1 ! clockoverlay halignment=right valignment=top shaded-background=true "
                     "font-desc=\"Sans 20\"")


def webrtcsink_run(cfg, binary, links):
    """The same viewers served by gst-plugins-rs webrtcsink behind its WHEP server (an encoder
    per viewer, congestion control on each, starting and capped at 2048 kbit/s, its default start
    and about the top rung's 2 Mb/s; its start-bitrate set lower trips its x264enc bitrate), from
    `webrtcsink-bench` next to `binary` (scripts/bench builds it); None without it."""
    harness = Path(binary).parent / "webrtcsink-bench"
    if not harness.exists():
        log("  webrtcsink: no webrtcsink-bench next to the binary (scripts/bench builds it for the full run)")
        return None
    port = free_port()
    launch = (f"{WEBRTCSINK_SOURCE} ! whepserversink signaller::host-addr=http://0.0.0.0:{port} "
              "video-caps=video/x-h264 max-bitrate=2048000")
    addresses = ",".join(["127.0.0.1"] + [link.host for link in links])
    ws = subprocess.Popen([str(harness), launch], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env={**os.environ, "ICE_ADDRESSES": addresses})
    procs = []
    try:
        time.sleep(3)
        idle = measure(cfg["window"], ws.pid)
        result = {"idle_cpu": idle["cpu"]}
        # A few viewers first (one shaped): what each costs while the machine keeps up; then all.
        for key, total, shaped in (("few", 4, links[:1]), ("all", cfg["adaptive_viewers"], links)):
            m, fast_fps, slow_fps, slow_kbps = adaptive_watch(
                cfg, total, shaped, f"http://127.0.0.1:{port}/whep/endpoint",
                lambda link: f"http://{link.host}:{port}/whep/endpoint", ws.pid, procs,
                # what x264enc's SPS says; webrtcsink wants the offer to name exactly that
                env={"PROFILE_LEVEL_ID": "42c01f"})
            quit_clients(procs)
            log(f"  webrtcsink, {total} viewers ({len(shaped)} shaped): cpu {m['cpu']:.1f}% (idle {idle['cpu']:.1f}%), "
                f"fps fast min {min(fast_fps or [0]):.1f}, shaped min {min(slow_fps or [0]):.1f}")
            result[key] = {"viewers": total, "cpu": m["cpu"], "rss_mb": m["rss_mb"], "threads": m.get("threads"),
                           "fast_fps": fast_fps, "shaped_fps": slow_fps, "shaped_kbps": slow_kbps}
            time.sleep(3)
        return result
    finally:
        quit_clients(procs)
        stop(ws)


def scenario_adaptive(cfg, binary, work):
    """A 720p30 2 Mb/s pipeline with a three-rung ladder ("auto"): its CPU with nobody watching
    (the top encoder alone), then with `adaptive_viewers` GStreamer viewers offering TWCC, the
    last `adaptive_shaped` each behind a 600 kbit/s link of its own; each viewer's rung and fps
    once they settled. Then (full run) the same viewers served by webrtcsink."""
    total, shaped, window = cfg["adaptive_viewers"], cfg["adaptive_shaped"], cfg["window"]
    links = []
    procs = []
    server = None
    try:
        for i in range(shaped):
            links.append(ShapedLink(i + 1, "600kbit"))
        ice = [a for link in links for a in ("--ice-address", link.host)]
        server = Serve(binary, {"live": adaptive_toml()}, work, extra=("--insecure", *ice), listen="0.0.0.0:0")
        port = server.base.rsplit(":", 1)[-1]
        base = f"http://127.0.0.1:{port}"
        idle = measure(window, server.proc.pid)
        log(f"  nobody watching: cpu {idle['cpu']:.1f}%")
        m, fast_fps, slow_fps, slow_kbps = adaptive_watch(
            cfg, total, links, f"{base}/whep/live", lambda link: f"http://{link.host}:{port}/whep/live",
            server.proc.pid, procs)
        # The top encode's own threads (the drawing, the encoder, its queue) in the same window:
        # a baseline the machine's wandering speed moves with the rest.
        top = sum(v for k, v in (m.get("threads") or {}).items()
                  if k in ("source:src", "video_encode_qu") or k.startswith("out0_video"))
        status = http_json(f"{base}/api/pipelines/live")
        rungs = {}
        for v in status.get("viewers", []):
            rungs[v.get("rung")] = rungs.get(v.get("rung"), 0) + 1
        log(f"  {total} viewers ({shaped} shaped): cpu {m['cpu']:.1f}%, rungs {rungs}, "
            f"fps fast min {min(fast_fps or [0]):.1f}, shaped min {min(slow_fps or [0]):.1f}")
        result = {"idle_cpu": idle["cpu"], "cpu": m["cpu"], "top_encode_cpu": top, "rss_mb": m["rss_mb"],
                  "threads": m.get("threads"),
                  "viewers": total, "shaped": shaped, "rungs": rungs, "fast_fps": fast_fps, "shaped_fps": slow_fps,
                  "shaped_kbps": slow_kbps, "ladder": status.get("ladder"),
                  "estimates": [v.get("estimate_kbps") for v in status.get("viewers", [])]}
        quit_clients(procs)
        # Nobody watching again: the machine's speed wanders (by up to a quarter between runs),
        # so the baseline is the mean of a window before the viewers and one after them.
        time.sleep(5)
        after = measure(window, server.proc.pid)
        result["idle_cpu_before"], result["idle_cpu_after"] = idle["cpu"], after["cpu"]
        result["idle_cpu"] = (idle["cpu"] + after["cpu"]) / 2
        log(f"  nobody watching again: cpu {after['cpu']:.1f}% (baseline {result['idle_cpu']:.1f}%)")
        server.close()
        server = None
        if cfg.get("webrtcsink"):
            result["webrtcsink"] = webrtcsink_run(cfg, binary, links)
        return result
    finally:
        quit_clients(procs)
        if server:
            server.close()
        for link in links:
            link.close()


def adaptive_rows(ad, rows):
    """The adaptive scenario's rows of the report."""
    def plain(metric, ours, target="", ok=None):
        rows.append(f"| adaptive | {metric} | {ours} | | | {target} {mark(ok)} |")

    idle, cpu = ad.get("idle_cpu"), ad.get("cpu")
    times = cpu / idle if idle and cpu is not None else None
    plain("720p30 2 Mb/s with ladder \"auto\", nobody watching: service CPU (%) (the top encoder alone; the mean "
          "of a window before the viewers and one after)",
          f"{fmt(idle)} ({fmt(ad.get('idle_cpu_before'))} · {fmt(ad.get('idle_cpu_after'))})")
    plain(f"{ad['viewers']} viewers offering TWCC ({ad['shaped']} each behind 600 kbit/s): service CPU (%) "
          "· ÷ nobody watching", f"{fmt(cpu)} · {fmt(times)}×",
          f"≤ {TARGETS['adaptive_cpu_ratio']}×", times <= TARGETS["adaptive_cpu_ratio"] if times else None)
    top = ad.get("top_encode_cpu")
    plain("the same window: the top encode's own threads (drawing, encoder, its queue), CPU (%) · service ÷ them",
          f"{fmt(top)} · {fmt(cpu / top if top and cpu is not None else None)}×")
    plain("viewers per rung", ", ".join(f"{k}: {v}" for k, v in sorted((ad.get("rungs") or {}).items(), key=str)))
    fast, slow = ad.get("fast_fps") or [0.0], ad.get("shaped_fps") or [0.0]
    plain("lowest fps: unshaped viewers · shaped viewers", f"{fmt(min(fast))} · {fmt(min(slow))}",
          f"shaped ≥ {TARGETS['adaptive_shaped_fps']}", min(slow) >= TARGETS["adaptive_shaped_fps"])
    plain("each rung: frames encoded · encoding", "; ".join(
        f"{r['rung']}: {r['frames_encoded']} · {r['encoding']}" for r in ad.get("ladder") or []))
    ws = ad.get("webrtcsink")
    if not ws:
        plain("webrtcsink (an encoder per viewer) serving the same viewers", "not run (full run only)")
        return
    few, all_ = ws["few"], ws["all"]
    per_viewer = (few["cpu"] - ws["idle_cpu"]) / few["viewers"]
    demand = ws["idle_cpu"] + per_viewer * all_["viewers"]
    less = demand / cpu if cpu else None
    plain(f"webrtcsink (an encoder per viewer, congestion control on each): CPU (%) with {few['viewers']} "
          "viewers · per viewer", f"{fmt(few['cpu'])} · {fmt(per_viewer)}")
    plain(f"webrtcsink with the same {all_['viewers']} viewers: CPU (%) · lowest fps unshaped · shaped",
          f"{fmt(all_['cpu'])} · {fmt(min(all_['fast_fps'] or [0]))} · {fmt(min(all_['shaped_fps'] or [0]))}")
    plain(f"webrtcsink's need for {all_['viewers']} viewers (idle + per viewer × {all_['viewers']}; more than the "
          "machine has when above 200) · ÷ ours", f"{fmt(demand)} · {fmt(less)}×", "≥ 5× ours",
          less >= 5 if less else None)


def scenario_viewers(cfg, binary, work):
    counts, window = cfg["viewer_counts"], cfg["window"]
    server = Serve(binary, {"live": stream_toml(max_viewers=max(counts))}, work)
    try:
        ours = viewers_run(server.proc.pid, "whep", f"{server.base}/whep/live", counts, window)
    finally:
        server.close()
    peer = AiortcServer("stream")
    try:
        theirs = viewers_run(peer.proc.pid, "offer", peer.url, cfg["peer_viewer_counts"], window)
    finally:
        peer.close()
    return {"mediaweave": ours, "aiortc": theirs}


def scenario_recording(cfg, binary, work):
    seconds = cfg["record_seconds"]
    publish = [VENV_PYTHON, str(PEERS / "aiortc_publisher.py")]
    size = ["--width", "1280", "--height", "720", "--h264", "--seconds", str(seconds)]
    result = {}

    def run(root_pid, url, mode, files, ready):
        pub = subprocess.Popen([*publish, mode, url, *size], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        wait_for("the publisher", 30, ready)
        time.sleep(1)
        m = measure(max(1.0, seconds - 2.5), root_pid)
        out, _ = pub.communicate(timeout=seconds + 30)
        sent = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        return m, sent, files

    server = Serve(binary, {"inbox": INBOX}, work)
    try:
        rec_dir = server.dir / "recordings" / "inbox"
        m, sent, _ = run(server.proc.pid, f"{server.base}/whip/inbox", "whip", None,
                         lambda: len(http_json(f"{server.base}/api/pipelines/inbox")["publishers"]) == 1)
        wait_for("the segment to be finalized", 20,
                 lambda: all(not r["recording"] for r in http_json(f"{server.base}/api/recordings")))
        written = sum(f.stat().st_size for f in rec_dir.glob("*") if f.is_file())
        result["mediaweave"] = {**m, "bytes_written": written, "bytes_received": sent["bytes_sent"]}
    finally:
        server.close()
    out = Path(tempfile.mkdtemp(dir=work)) / "aiortc.mp4"
    peer = AiortcServer("record", ["--out", str(out)])
    try:
        m, sent, _ = run(peer.proc.pid, peer.url, "offer", None,
                         lambda: out.exists() and out.stat().st_size > 0)
    finally:
        peer.close()
    result["aiortc"] = {**m, "bytes_written": out.stat().st_size if out.exists() else 0,
                        "bytes_received": sent["bytes_sent"]}
    return result


def run_pipeline(binary, text, work, seconds, count_file=None):
    """`mediaweave run FILE` for `seconds` after a warm-up: its CPU, RSS and frames counted."""
    path = Path(tempfile.mkdtemp(dir=work)) / "bench.toml"
    path.write_text(text)
    proc = subprocess.Popen([binary, "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        before = read_count(count_file)
        m = measure(seconds, proc.pid)
        m["fps"] = (read_count(count_file) - before) / m["seconds"] if count_file else None
    finally:
        stop(proc, signal.SIGINT)
    return m


def read_count(path):
    try:
        return json.loads(Path(path).read_text())["frames"] if path else 0
    except (OSError, ValueError, KeyError):
        return 0


def scenario_hooks(cfg, binary, work):
    seconds = cfg["window"]
    encoded = '\n[encode]\nbitrate = 4000\n\n[[output]]\nkind = "tcp"\nport = {port}\n'
    without = run_pipeline(binary, hook_toml(encoded.format(port=free_port())), work, seconds)
    with_hook = run_pipeline(
        binary, hook_toml(encoded.format(port=free_port()) + '\n[[hook]]\nkind = "stats"\nevery = 30\n'),
        work, seconds)
    # The external hook gets every frame, in BGR, as a numpy array. Its source is `blink`
    # (every frame changes): videotestsrc draws its ball at 1080p in 6 ms, far more than the
    # seeds' OpenCV sender draws its own; this compares getting frames to Python, not drawing.
    def external(transport):
        count = Path(tempfile.mkdtemp(dir=work)) / "hook.json"
        consumer = (f'\n[[hook]]\nkind = "process"\nformat = "BGR"\ntransport = "{transport}"\n'
                    f'command = ["{VENV_PYTHON}", "{PEERS / "hook_consumer.py"}", "{count}"]\n')
        return run_pipeline(binary, hook_toml(consumer, "blink"), work, seconds, count)

    shm, stream = external("shm"), external("stream")

    seeds_count = Path(tempfile.mkdtemp(dir=work)) / "seeds.json"
    port = free_port()
    receiver = subprocess.Popen([VENV_PYTHON, str(PEERS / "jpeg_tcp.py"), "recv", str(port), str(seeds_count)],
                                stdout=subprocess.PIPE, text=True)
    receiver.stdout.readline()  # {"listening": port}
    sender = subprocess.Popen([VENV_PYTHON, str(PEERS / "jpeg_tcp.py"), "send", str(port)])
    try:
        time.sleep(3)
        before = read_count(seeds_count)
        m = measure(seconds, sender.pid, receiver.pid)
        m["fps"] = (read_count(seeds_count) - before) / m["seconds"]
    finally:
        stop(sender)
        stop(receiver)
    return {"without": without, "rust_hook": with_hook, "python_hook": shm, "python_hook_stream": stream,
            "seeds_jpeg_tcp": m}


# The tutorials' JPEG-over-TCP sender as it is written (tests/peers/tutorial_jpeg.py: OpenCV
# frames of a clip resized to 480x315, JPEG at 90, base64, `sock.send`, 0.02 s apart), with the
# time drawn into each frame (peerkit's stamp, 12-pixel blocks) so both ends can say how old
# what they show is. Its own receiver (the tutorials' "AI server": base64, cv2.imdecode) against
# mediaweave: jpeg-tcp in, H.264 over WebRTC to a stock aiortc viewer.
def tutorial_toml(port):
    return (f'[source]\nkind = "jpeg-tcp"\nlisten = "127.0.0.1:{port}"\nframing = "ascii-base64"\n\n'
            '[encode]\nbitrate = 1500\n\n[[output]]\nkind = "webrtc"\n')


def tutorial_clip(work):
    path = Path(tempfile.mkdtemp(dir=work)) / "clip.mp4"
    subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=60", "pattern=ball", "!",
                    "video/x-raw,width=640,height=360,framerate=30/1", "!", "x264enc", "!", "mp4mux", "!",
                    "filesink", f"location={path}"], check=True)
    return str(path)


def tutorial_sender(port, clip):
    return subprocess.Popen([VENV_PYTHON, str(PEERS / "tutorial_jpeg.py"), "send", "127.0.0.1", str(port), clip,
                             "ascii-base64", "--stamp"])


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def scenario_tutorial(cfg, binary, work):
    seconds = cfg["window"]
    clip = tutorial_clip(work)
    # The tutorial's own pair: CPU of the receiver (the sender costs the same on both sides).
    count = Path(tempfile.mkdtemp(dir=work)) / "tutorial.json"
    port = free_port()
    receiver = subprocess.Popen([VENV_PYTHON, str(PEERS / "tutorial_jpeg.py"), "recv", str(port), str(count),
                                 "--stamps"], stdout=subprocess.PIPE, text=True)
    receiver.stdout.readline()  # {"listening": port}
    sender = tutorial_sender(port, clip)
    try:
        wait_for("the tutorial's receiver to decode", 20, lambda: read_json(count).get("frames", 0) > 30)
        before = read_json(count)
        m = measure(seconds, receiver.pid)
        after = read_json(count)
        pair = {"cpu": m["cpu"], "rss_mb": m["rss_mb"],
                "fps": (after.get("frames", 0) - before.get("frames", 0)) / m["seconds"],
                "latencies_ms": after.get("latencies_ms", [])}
    finally:
        stop(sender)
        stop(receiver)
    # mediaweave, with one viewer watching throughout the window.
    port = free_port()
    server = Serve(binary, {"pi": tutorial_toml(port)}, work)
    sender = tutorial_sender(port, clip)
    status = f"{server.base}/api/pipelines/pi"
    try:
        wait_for("frames into mediaweave", 20, lambda: http_json(status)["jpeg_tcp"]["frames"] > 30)
        seen = {}

        def view():
            try:
                seen["v"] = aiortc_view(["whep", f"{server.base}/whep/pi", "--frames", "100000", "--stamps",
                                         "--stamp-block", "12", "--timeout", str(seconds + 8)], seconds + 40)
            except Exception as e:  # noqa: BLE001 - said in the results
                seen["error"] = f"{type(e).__name__}: {e}"

        viewer = threading.Thread(target=view)
        viewer.start()
        time.sleep(4)  # connected, playing
        f0 = http_json(status)["jpeg_tcp"]["frames"]
        m = measure(seconds, server.proc.pid)
        f1 = http_json(status)["jpeg_tcp"]["frames"]
        viewer.join()
        if "error" in seen:
            raise RuntimeError(f"the viewer failed: {seen['error']}")
        v = seen.get("v", {})
        ours = {"cpu": m["cpu"], "rss_mb": m["rss_mb"], "fps": (f1 - f0) / m["seconds"],
                "viewer_frames": v.get("frames", 0), "latencies_ms": v.get("latencies_ms", [])[30:],
                "sender_latency_ms": http_json(status)["jpeg_tcp"].get("sender_latency_ms")}
    finally:
        stop(sender)
        server.close()
    return {"mediaweave": ours, "tutorial": pair}


def tutorial_rows(tu, row):
    ours, theirs = tu["mediaweave"], tu["tutorial"]
    peer = "the tutorial's receiver"
    row("tutorial sender, 480x315 JPEG over TCP", "frames taken per second", ours["fps"], theirs["fps"], peer)
    # % of a core ÷ frames a second = CPU time per frame: % × 10 ms.
    per_frame = [10 * side["cpu"] / side["fps"] if side["fps"] else None for side in (ours, theirs)]
    row("tutorial sender", "CPU time per frame (ms): service (JPEG → WebRTC) vs receiver (JPEG decoded)",
        per_frame[0], per_frame[1], peer)
    for p, key in ((0.5, "p50"), (0.95, "p95")):
        row("tutorial sender", f"sender to screen, {key} (ms; {len(ours['latencies_ms'])} and "
            f"{len(theirs['latencies_ms'])} frames)", percentile(ours["latencies_ms"], p),
            percentile(theirs["latencies_ms"], p), peer)


def scenario_overhead(cfg, binary, work):
    seconds = cfg["window"]
    ours = run_pipeline(binary, f'launch = "{RAW_LAUNCH}"\n', work, seconds)
    proc = subprocess.Popen(["gst-launch-1.0", "-q", *RAW_LAUNCH.split()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        theirs = measure(seconds, proc.pid)
    finally:
        stop(proc, signal.SIGINT)
    return {"mediaweave": ours, "gst_launch": theirs}


def relay_publish(mode, url):
    """The relay scenario's aiortc publisher (mode "whip", or "offer": aiortc-style JSON),
    sending until stop_publishing()."""
    return subprocess.Popen([VENV_PYTHON, str(PEERS / "aiortc_publisher.py"), mode, url, "--stamp",
                             *RELAY_PICTURE, *RELAY_H264, "--seconds", "3600"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def stop_publishing(pub):
    """Ends the publisher (SIGTERM: it leaves as usual) and returns its JSON line: frames sent,
    seconds, RTP payload bytes."""
    stop(pub)
    lines = [l for l in pub.stdout.read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def stamped_view(mode, url, frames):
    """A stock aiortc viewer reading the stamps of `frames` frames (after 30 left out while it
    settles): (latencies, what else it saw)."""
    v = aiortc_view([mode, url, "--frames", str(frames + 30), "--stamps", "--timeout", str(frames / 20 + 30)],
                    frames / 20 + 60)
    return v["latencies_ms"][30:], {k: v[k] for k in ("frames", "ttff_ms", "max_gap_ms", "width", "height")}


def scenario_relay(cfg, binary, work):
    """An aiortc publisher relayed live by mediaweave (WHIP in, WHEP out, nothing decoded):
    glass-to-glass latency through it, against the same picture from one aiortc encoder
    straight to the viewer (direct) and relayed by an aiortc server (MediaRelay: decoded once,
    encoded per viewer); then the relay's CPU and RSS as GStreamer viewers are added (the
    publisher is a process of its own: not counted)."""
    frames, window = cfg["relay_frames"], cfg["window"]
    result = {"latency": {}, "views": {}, "publisher": {}, "viewers": {}}

    def relayed(name, root_pid, publish, ready, watch, viewer_counts):
        """publish, watch: (mode, URL) of the publisher and of the viewers."""
        pub = relay_publish(*publish)
        try:
            wait_for("the publisher", 30, ready)
            result["latency"][name], result["views"][name] = stamped_view(*watch, frames)
            if viewer_counts:
                result["viewers"][name] = viewers_run(root_pid, *watch, viewer_counts, window)
        finally:
            result["publisher"][name] = stop_publishing(pub)

    server = Serve(binary, {"relay": RELAY}, work)
    try:
        relayed("mediaweave", server.proc.pid, ("whip", f"{server.base}/whip/relay"),
                lambda: len(http_json(f"{server.base}/api/pipelines/relay")["publishers"]) == 1,
                ("whep", f"{server.base}/whep/relay"), cfg["relay_viewer_counts"])
    finally:
        server.close()
    direct = AiortcServer("stream", ["--bars", "--track-per-viewer", *RELAY_PICTURE, *RELAY_H264])
    try:
        result["latency"]["direct"], result["views"]["direct"] = stamped_view("offer", direct.url, frames)
    finally:
        direct.close()
    peer = AiortcServer("relay", RELAY_H264)
    try:
        base = f"http://127.0.0.1:{peer.port}"
        relayed("aiortc", peer.proc.pid, ("offer", f"{base}/publish"),
                lambda: http_json(f"{base}/status")["publishing"],
                ("offer", peer.url), cfg["relay_peer_viewer_counts"])
    finally:
        peer.close()
    return result


ROOM = """[source]
kind = "room"
codec = "h264"
audio = false
max_participants = 8

[[output]]
kind = "webrtc"
"""


def call(procs, window, service_pids=()):
    """Starts the call's participants (Popen objects printing "ready" once they decode every
    other one), measures CPU over `window` seconds of the call (the service's, and the
    participants' own), then ends it: (service window, participants window, their reports)."""
    try:
        for proc in procs:
            line = ""
            deadline = time.monotonic() + 90
            while line.strip() != "ready" and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line and proc.poll() is not None:
                    raise RuntimeError("a participant ended before it decoded the others")
            if line.strip() != "ready":
                raise RuntimeError("a participant did not decode the others within 90 s")
        service = Window(*service_pids).start() if service_pids else None
        peers = Window(*(p.pid for p in procs)).start()
        time.sleep(window)
        ours, theirs = (service.stop() if service else None), peers.stop()
    finally:
        for proc in procs:
            stop(proc)
    reports = []
    for proc in procs:
        lines = [l for l in proc.stdout.read().splitlines() if l.startswith("{")]
        if lines:
            reports.append(json.loads(lines[-1]))
    return ours, theirs, reports


def scenario_rooms(cfg, binary, work):
    """Calls of stock aiortc participants (640x480@30 H.264 at 1 Mb/s, stamped), each watching
    every other one, through a mediaweave room and as a peer-to-peer mesh of the same aiortc
    peers (what the tutorials build: a connection, so an encoder, per pair; CPU summed over
    the peers). Four people (12 relay readers): the service's CPU and RSS, the participants'
    own CPU, each receiver's fps. Two people: the stamps' glass-to-glass latency through the
    room against the same two peers direct (four aiortc participants fill this machine's two
    cores, which would make the four-person latencies the participants', not the path's)."""
    window = cfg["window"]
    script = str(PEERS / "aiortc_room.py")
    result = {}

    def participants(mode, n, base=None):
        if mode == "room":
            args = [[script, "room", base, "lobby", f"p{i}", "--others", str(n - 1)] for i in range(n)]
        else:
            ports = ",".join(str(free_port()) for _ in range(n))
            args = [[script, "mesh", "--index", str(i), "--ports", ports] for i in range(n)]
        return [subprocess.Popen([VENV_PYTHON, *a], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for a in args]

    for n in (4, 2):
        server = Serve(binary, {"lobby": ROOM}, work)
        try:
            ours, peers, reports = call(participants("room", n, server.base), window, [server.proc.pid])
            result[f"mediaweave_{n}"] = {"service": ours, "participants": peers, "reports": reports}
        finally:
            server.close()
        _, peers, reports = call(participants("mesh", n), window)
        result[f"mesh_{n}"] = {"participants": peers, "reports": reports}
    return result


def rooms_rows(rm, row, rows):
    """The rooms scenario's rows of the report."""
    ours, mesh = rm.get("mediaweave_4") or {}, rm.get("mesh_4") or {}

    def lowest(side, key):
        values = [v for r in side.get("reports", []) for v in (r[key].values() if key == "fps" else [r[key]])]
        return min(values) if values else None

    def latencies(side):
        return [v for r in side.get("reports", []) for v in r["latencies_ms"]]

    def mean(side, key):
        values = [v for r in side.get("reports", []) for v in (r[key].values() if key == "fps" else [r[key]])]
        return statistics.mean(values) if values else None

    service = ours.get("service") or {}
    scenario = "rooms: 4 aiortc participants, 640x480@30 H.264 1 Mb/s, each watching the other 3"
    row(scenario, "service CPU for the room (% of a core; 12 relay readers), at the rate the participants sent",
        service.get("cpu"), (mesh.get("participants") or {}).get("cpu"), "4-peer aiortc mesh, CPU of all 4 peers")
    # Four aiortc participants fill two cores and send about half of 30 fps: the service's
    # work is per frame relayed, so its CPU at the 30 fps the target assumes is scaled up.
    sent = mean(ours, "sent_fps")
    scaled = service["cpu"] * 30 / sent if service.get("cpu") is not None and sent else None
    row("rooms", f"service CPU scaled to 30 fps sent (they sent {fmt(sent)} fps on average)", scaled, None,
        "–", f"≤ {TARGETS['room_cpu']} %", scaled <= TARGETS["room_cpu"] if scaled is not None else None)
    row("rooms", "service RSS (MB)", service.get("rss_mb"), None, "mesh: no service")
    row("rooms", "the participants' own CPU (% of a core, all 4)", (ours.get("participants") or {}).get("cpu"),
        (mesh.get("participants") or {}).get("cpu"), "4-peer aiortc mesh")
    row("rooms", "lowest fps a participant sends (aiortc encodes as fast as it can)", lowest(ours, "sent_fps"),
        lowest(mesh, "sent_fps"), "4-peer aiortc mesh")
    row("rooms", "lowest fps a participant decodes of another", lowest(ours, "fps"), lowest(mesh, "fps"),
        "4-peer aiortc mesh")
    row("rooms", "mean fps a participant decodes of another", mean(ours, "fps"), mean(mesh, "fps"),
        "4-peer aiortc mesh")
    ours2, mesh2 = latencies(rm.get("mediaweave_2") or {}), latencies(rm.get("mesh_2") or {})
    for p, key in ((0.5, "p50"), (0.95, "p95")):
        row("rooms: 2 participants", f"{key} glass-to-glass latency between them (ms, {len(ours2)} frames)",
            percentile(ours2, p), percentile(mesh2, p), "the 2 aiortc peers direct")
    p50, direct = percentile(ours2, 0.5), percentile(mesh2, 0.5)
    added = p50 - direct if p50 is not None and direct is not None else None
    rows.append(f"| rooms | p50 added by the service (room − direct, ms) | {fmt(added)} | | | "
                f"≤ {TARGETS['room_added_p50']} ms {mark(added <= TARGETS['room_added_p50'] if added is not None else None)} |")
    row("rooms: 2 participants", "lowest fps a participant decodes of the other", lowest(rm.get("mediaweave_2") or {}, "fps"),
        lowest(rm.get("mesh_2") or {}, "fps"), "the 2 aiortc peers direct")


# The reach scenario's pipeline: the stamped 720p30 stream of the latency scenario, served over
# WebRTC, RTSP (the embedded server) and HLS (1 s segments, 6 in the playlist) at once.
REACH_SEGMENT = 1


def reach_toml():
    return (stream_toml(max_viewers=8)
            + f'\n[[output]]\nkind = "rtsp"\n\n[[output]]\nkind = "hls"\nsegment = {REACH_SEGMENT}\n'
            'playlist_length = 6\n'
            '\n[[hook]]\nkind = "rust"\nname = "stamp"\nmode = "transform"\nformat = "I420"\n')


def machine_ticks():
    """(busy, all) CPU ticks of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(since):
    """% of all the machine's cores busy (anyone's work) since machine_ticks() gave `since`."""
    busy, total = machine_ticks()
    return 100 * (busy - since[0]) / max(1, total - since[1])


def stamp_read(args, timeout):
    """tests/peers/stamp_reader.py (an RTSP or HLS client decoding the stamps): its JSON."""
    out = subprocess.run([SYSTEM_PYTHON, str(PEERS / "stamp_reader.py"), *args, "--timeout", str(timeout)],
                         capture_output=True, text=True, timeout=timeout + 30)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"stamp reader printed nothing: {out.stderr[-500:]}")
    return json.loads(lines[-1])


def hlsjs_read(base, path, frames, skip, timeout, config=None):
    """tests/browser/hls_stamps.mjs: hls.js in headless Chromium, stamps read as frames show;
    `config` for new Hls() (its defaults otherwise)."""
    out = subprocess.run(["node", str(ROOT / "tests" / "browser" / "hls_stamps.mjs"), base, path, str(frames),
                          str(frames / 30 + 5), str(skip), json.dumps(config or {})],
                         capture_output=True, text=True, timeout=timeout)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"hls.js reader printed nothing: {out.stderr[-500:]}")
    v = json.loads(lines[-1])
    lat = v.get("latencies_ms") or []
    return {**v, "p50": percentile(lat, 0.5), "p90": percentile(lat, 0.9)}


def scenario_reach(cfg, binary, work):
    """One stamped 720p30 stream served over WebRTC, RTSP and HLS at once. The service's CPU
    as RTSP clients (TCP, depayloaded, not decoded), then HLS clients (hlsdemux fetching
    like a player, at a player's pace) are added, one kind at a time; then the glass-to-glass
    latency of each path, one reader at a time, each decoding the stamps: RTSP (rtspsrc
    latency=0, frames taken as decoded), WebRTC (the aiortc viewer over WHEP), HLS as players
    show it (hls.js in Chromium, as configured by default and one target duration behind the
    edge; GStreamer's playbin and playbin3), and at the live edge (how old each segment is when
    the playlist names it). Last, the service with no client."""
    frames, skip, window = cfg["reach_frames"], cfg["reach_skip"], cfg["reach_window"]
    port = free_port()
    server = Serve(binary, {"live": reach_toml()}, work, ["--rtsp-listen", f"127.0.0.1:{port}"])
    rtsp, hls_path = f"rtsp://127.0.0.1:{port}/live", "/hls/live/index.m3u8"
    hls = server.base + hls_path
    result = {"segment_s": REACH_SEGMENT, "clients": {}, "latency": {}, "reads": {}, "errors": {}}

    def segments():
        import urllib.request

        with urllib.request.urlopen(hls, timeout=5) as resp:
            return sum(1 for l in resp.read().decode().splitlines() if l.strip().endswith(".ts"))

    def read(name, how):
        t0, ticks = time.monotonic(), machine_ticks()
        try:
            v = how()
        except Exception as e:  # noqa: BLE001 - the other paths are still measured
            result["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"  {name}: {e}")
            return
        result["latency"][name] = v.pop("latencies_ms", [])
        result["reads"][name] = {**v, "machine_busy": machine_busy(ticks)}
        if v.get("error"):
            result["errors"][name] = v["error"]
        log(f"  {name}: p50 {v.get('p50')} ms, {len(result['latency'][name])} frames "
            f"({time.monotonic() - t0:.0f} s)")

    machine = machine_ticks()
    try:
        # CPU first (the playlist fills meanwhile).
        for mode, url in (("rtsp", rtsp), ("hls", hls)):
            if mode == "hls":
                # A full playlist, so that players start where they would on a running stream.
                wait_for("the HLS playlist to name 6 segments", 30, lambda: segments() >= 6)
            result["clients"][mode] = viewers_run(server.proc.pid, mode, url, cfg["reach_counts"], window,
                                                  script="stream_clients.py", baseline=False, threads=True)
        timeout = frames / 30 + cfg["reach_timeout"]
        read("rtsp", lambda: stamp_read([rtsp, "--frames", str(frames), "--skip", str(skip)], timeout))

        def webrtc():
            lat, seen = stamped_view("whep", f"{server.base}/whep/live", frames)
            return {**seen, "p50": percentile(lat, 0.5), "p90": percentile(lat, 0.9), "latencies_ms": lat}

        read("webrtc", webrtc)
        # An HLS player's latency is set when it starts (where in the playlist, and in the
        # segment being written, it begins) and stays: several starts, frames/starts each.
        starts = cfg["reach_hls_starts"]
        each = frames // starts
        timeout = each / 30 + cfg["reach_timeout"]

        def several(read_once):
            runs = [read_once() for _ in range(starts)]
            lat = [v for r in runs for v in r.get("latencies_ms") or []]
            merged = {k: v for k, v in runs[0].items() if isinstance(v, (str, bool)) or k == "elements"}
            for key in ("decoded", "presented", "unreadable", "buffering_pauses"):
                if key in runs[0]:
                    merged[key] = sum(r.get(key) or 0 for r in runs)
            if "hls_latency_s" in runs[0]:
                merged["hls_latency_s"] = [v for r in runs for v in r.get("hls_latency_s") or []]
            return {**merged, "latencies_ms": lat, "frames": len(lat), "p50": percentile(lat, 0.5),
                    "p90": percentile(lat, 0.9), "p99": percentile(lat, 0.99),
                    "min": min(lat, default=None), "max": max(lat, default=None),
                    "starts": [{k: r.get(k) for k in ("p50", "frames", "first_frame_ms", "error")} for r in runs],
                    "error": "; ".join(r["error"] for r in runs if r.get("error")) or None}

        read("hls_hlsjs", lambda: several(lambda: hlsjs_read(server.base, hls_path, each, skip, timeout + 30)))
        if cfg["reach_hlsjs_sync1"]:
            # What a page of one's own can choose: hls.js one target duration behind the edge.
            read("hls_hlsjs_sync1", lambda: several(lambda: hlsjs_read(
                server.base, hls_path, each, skip, timeout + 30, {"liveSyncDurationCount": 1})))
        read("hls_playbin", lambda: several(lambda: stamp_read(
            [hls, "--sync", "--frames", str(each), "--skip", str(skip)], timeout)))
        if cfg["reach_playbin3"]:
            read("hls_playbin3", lambda: several(lambda: stamp_read(
                [hls, "--sync", "--playbin3", "--frames", str(each), "--skip", str(skip)], timeout)))
        read("hls_edge", lambda: stamp_read([hls, "--edge", "--segments", str(cfg["reach_edge_segments"])],
                                            cfg["reach_edge_segments"] * REACH_SEGMENT + 20))
        # The service with no client at all, last: every client and reader has left (and the
        # start's own work is long over).
        m = measure(window, server.proc.pid, threads=True)
        result["clients"]["idle"] = {"viewers": 0, "cpu": m["cpu"], "rss_mb": m["rss_mb"], "fps": [], **serving(m)}
    finally:
        server.close()
        result["machine_busy"] = machine_busy(machine)
    return result


def reach_rows(rc, row, rows):
    """The reach scenario's rows of the report."""
    lat, reads = rc.get("latency") or {}, rc.get("reads") or {}
    clients = rc.get("clients") or {}
    seg = rc.get("segment_s", REACH_SEGMENT)

    def two(v):
        return "–" if v is None else f"{v:.2f}"

    def plain(scenario, metric, ours, target="", ok=None):
        rows.append(f"| {scenario} | {metric} | {ours} | | | {target} {mark(ok)} |")

    scenario = f"reach: one 720p30 stream (stamped ball) served over RTSP, HLS ({seg} s segments) and WebRTC at once"
    idle = clients.get("idle")
    if idle:
        plain(scenario, "no client (measured last): service CPU (%) · of it, not drawing or encoding the picture "
              "· RSS (MB)", f"{fmt(idle['cpu'])} · {fmt(idle.get('serving_cpu'))} · {fmt(idle['rss_mb'])}")
    for mode, what, client in (("rtsp", "RTSP", "rtspsrc over TCP, depayloaded"),
                               ("hls", "HLS", "hlsdemux at a player's pace")):
        rs = clients.get(mode) or []
        per, whole = slope(rs, "serving_cpu"), slope(rs)
        target = TARGETS["reach_rtsp_client_cpu"] if mode == "rtsp" else None
        plain("reach", f"CPU per added {what} client (% of a core; {client}; counts where every client gets ≥ 27 fps), "
              "the service less the threads drawing and encoding the picture",
              two(per), f"≤ {target} %" if target else "", per <= target if target and per is not None else None)
        plain("reach", f"CPU per added {what} client, the whole service (as `viewers`; the encoder's swings of a "
              "few % per window swamp it)", two(whole))
        for r in rs:
            kbps = statistics.median(r["kbps"]) if r.get("kbps") else None
            plain("reach", f"{r['viewers']} {what} client{'' if r['viewers'] == 1 else 's'}: service CPU (%) · of it, not drawing or encoding · "
                  "lowest client fps · connected · median kb/s received",
                  f"{fmt(r['cpu'])} · {fmt(r.get('serving_cpu'))} · {fmt(min(r['fps'] or [0.0]))} · "
                  f"{r.get('connected')}/{r['viewers']} · {fmt(kbps)}")
    paths = (
        ("rtsp", "RTSP: rtspsrc (TCP, latency=0), frames as decoded"),
        ("webrtc", "WebRTC: the aiortc viewer over WHEP"),
        ("hls_hlsjs", "HLS: hls.js (default configuration) in Chromium, frames as shown"),
        ("hls_hlsjs_sync1", "HLS: hls.js with liveSyncDurationCount: 1 (1 target duration behind the edge, not "
                            "the default 3), frames as shown"),
        ("hls_playbin", "HLS: GStreamer playbin, as gst-play-1.0 (hlsdemux), frames as shown"),
        ("hls_playbin3", "HLS: GStreamer playbin3 (hlsdemux2), frames as shown"),
        ("hls_edge", "HLS live edge: each new segment played from the moment the playlist names it (no player does this)"),
    )
    for name, what in paths:
        if name not in reads and name not in (rc.get("errors") or {}):
            continue
        values = lat.get(name) or []
        p50, p90 = percentile(values, 0.5), percentile(values, 0.9)
        unit = "segments" if name == "hls_edge" else "frames"
        runs = (reads.get(name) or {}).get("starts") or []
        if len(runs) > 1:
            unit += f", {len(runs)} starts: p50 " + " / ".join(fmt(r.get("p50")) for r in runs)
        judged = name in ("hls_hlsjs", "hls_playbin")
        target = TARGETS["reach_hls_p50"]
        error = (rc.get("errors") or {}).get(name)
        plain("reach: glass-to-glass latency (stamp read by a decoding client)" if name == "rtsp" else "reach",
              f"{what}: p50 · p90 (ms, {len(values)} {unit})",
              f"{fmt(p50)} · {fmt(p90)}" + (f" (error: {error[:120]})" if error else ""),
              f"p50 ≤ {target} ms" if judged else "", p50 <= target if judged and p50 is not None else None)
    hj = reads.get("hls_hlsjs") or {}
    if hj.get("hls_latency_s"):
        plain("reach", "HLS: hls.js's own distance behind the playlist's live edge (s, median)",
              fmt(statistics.median(hj["hls_latency_s"])))
    edge = reads.get("hls_edge") or {}
    if edge.get("last_frame_age_p50") is not None:
        plain("reach", "HLS: age of a segment's last frame when the playlist first names it (ms, p50)",
              fmt(edge["last_frame_age_p50"]))
    if rc.get("machine_busy") is not None:
        plain("reach", "the whole machine's CPU busy during the scenario (% of all its cores; anyone's work, the "
              "clients' and readers' included)", fmt(rc["machine_busy"]))


# ---------------------------------------------------------------------------------------------
# Report

def versions(binary):
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "mediaweave": first_line([binary, "--version"]),
        "gstreamer": first_line(["gst-launch-1.0", "--version"]),
        "aiortc": first_line([VENV_PYTHON, "-c", "import aiortc; print(aiortc.__version__)"]),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def fmt(v, unit=""):
    if v is None:
        return "–"
    return f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "–"


def mark(ok):
    return "–" if ok is None else ("✓" if ok else "✗")


def relay_rows(rl, row, rows):
    """The relay scenario's rows of the report."""
    lat = rl["latency"]
    ours_l, theirs_l, direct_l = lat.get("mediaweave") or [], lat.get("aiortc") or [], lat.get("direct") or []
    for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        row("relay: glass-to-glass latency, aiortc publisher (720p30 H.264 2 Mb/s) to an aiortc viewer",
            f"{key} through the relay (ms, {len(ours_l)} frames)", percentile(ours_l, p),
            percentile(theirs_l, p), "aiortc MediaRelay")
        row("relay", f"{key} direct: the same picture from one aiortc encoder to the viewer (ms)", None,
            percentile(direct_l, p), "aiortc, no relay")
    for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        # A difference of percentiles, not a percentile of differences (the paths ran apart).
        direct = percentile(direct_l, p)
        ours, theirs = (percentile(v, p) - direct if v and direct is not None else None for v in (ours_l, theirs_l))
        target = TARGETS["relay_added_p50"] if key == "p50" else None
        rows.append(f"| relay | {key} added by the relay (relay − direct, ms) | {fmt(ours)} | "
                    f"{fmt(theirs)} (aiortc MediaRelay) | | {f'≤ {target} ms ' if target else ''}"
                    f"{mark(ours <= target if target and ours is not None else None)} |")
    ours_v, theirs_v = rl["viewers"].get("mediaweave") or [], rl["viewers"].get("aiortc") or []
    for key, what, unit in (("cpu", "CPU per added viewer (% of a core; counts where every viewer gets ≥ 27 fps)",
                             "%"), ("rss_mb", "RSS per added viewer (MB)", "MB")):
        ours, theirs = slope(ours_v, key), slope(theirs_v, key)
        target = TARGETS[f"relay_per_viewer_{'cpu' if key == 'cpu' else 'rss'}"]
        row("relay viewers (GStreamer webrtcbin), 720p30 2 Mb/s", what, ours, theirs, "aiortc MediaRelay",
            f"≤ {target} {unit}", ours <= target if ours is not None else None)
    most = max(ours_v, key=lambda r: r["viewers"], default=None)
    if most and most["viewers"]:
        lowest = min(most["fps"] or [0.0])
        rows.append(f"| relay viewers | {most['viewers']} viewers at once: every viewer's fps ≥ 27 | "
                    f"{lowest:.1f} (lowest) | | | ≥ 27 fps {mark(lowest >= 27)} |")
    by_n = {r["viewers"]: r for r in theirs_v}
    for r in ours_v:
        t = by_n.get(r["viewers"])
        if r["viewers"] == 0:
            row("relay viewers", "publishing, no viewer: service CPU (%)", r["cpu"], t and t["cpu"], "aiortc MediaRelay")
            row("relay viewers", "publishing, no viewer: RSS (MB)", r["rss_mb"], t and t["rss_mb"], "aiortc MediaRelay")
            continue
        n = r["viewers"]
        row("relay viewers", f"{n} viewers: service CPU (%)", r["cpu"], t and t["cpu"], "aiortc MediaRelay")
        row("relay viewers", f"{n} viewers: lowest viewer fps", min(r["fps"] or [0.0]),
            t and min(t["fps"] or [0.0]), "aiortc MediaRelay")
        row("relay viewers", f"{n} viewers: connected", r.get("connected"), t and t.get("connected"),
            "aiortc MediaRelay")
        row("relay viewers", f"{n} viewers: RSS (MB)", r["rss_mb"], t and t["rss_mb"], "aiortc MediaRelay")
        row("relay viewers", f"{n} viewers: median kb/s received", statistics.median(r["kbps"] or [0.0]),
            t and statistics.median(t["kbps"] or [0.0]), "aiortc MediaRelay")
    pubs = rl.get("publisher") or {}

    def sent(name, what):
        p = pubs.get(name)
        if not p or not p.get("seconds"):
            return None
        return p["frames"] / p["seconds"] if what == "fps" else p["bytes_sent"] * 8 / p["seconds"] / 1000

    row("relay", "publisher: frames sent per second", sent("mediaweave", "fps"), sent("aiortc", "fps"),
        "aiortc MediaRelay")
    row("relay", "publisher: kb/s sent (video and audio payload)", sent("mediaweave", "kbps"),
        sent("aiortc", "kbps"), "aiortc MediaRelay")


def report(results, meta, quick):
    rows = []

    def row(scenario, metric, ours, theirs, peer, target="", ok=None, unit=""):
        rows.append(f"| {scenario} | {metric} | {fmt(ours, unit)} | {fmt(theirs, unit)} ({peer}) | "
                    f"{ratio(ours, theirs)} | {target} {mark(ok)} |")

    lat = results.get("latency")
    if lat:
        for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            ours, theirs = percentile(lat["mediaweave"], p), percentile(lat["aiortc"], p)
            target = TARGETS.get(f"latency_{key}")
            row("glass-to-glass latency, 720p30", f"{key} (ms, {len(lat['mediaweave'])} frames)",
                ours, theirs, "aiortc", f"≤ {target} ms" if target else "",
                ours <= target if target and ours is not None else None)
    tt = results.get("ttff")
    if tt:
        for kind in ("whep", "ws"):
            for p, key in ((0.5, "p50"), (0.95, "p95")):
                ours, theirs = percentile(tt[kind], p), percentile(tt["aiortc"], p)
                ok = ours <= TARGETS["ttff_p50"] if key == "p50" and ours is not None else None
                row(f"time to first frame ({'WHEP' if kind == 'whep' else 'WebSocket protocol'})",
                    f"{key} (ms, {len(tt[kind])} trials)", ours, theirs, "aiortc /offer",
                    f"≤ {TARGETS['ttff_p50']} ms" if key == "p50" else "", ok)
    vw = results.get("viewers")
    if vw:
        ours, theirs = slope(vw["mediaweave"]), slope(vw["aiortc"])
        ok = ours <= TARGETS["per_viewer_cpu"] if ours is not None else None
        row("viewers, 720p30 2 Mb/s", "CPU per added viewer (% of a core; counts where every viewer gets ≥ 27 fps)",
            ours, theirs, "aiortc",
            f"≤ {TARGETS['per_viewer_cpu']} %", ok)
        if ours is not None and theirs is not None:
            # A slope within the noise (≤ 0.1 % of a core) is reported as such, not divided by.
            times = f"{theirs / ours:.0f}×" if ours > 0.1 else f"> {theirs / 0.1:.0f}× (ours within noise)"
            rows.append(f"| viewers | aiortc ÷ mediaweave CPU per added viewer | {times} | | | "
                        f"≥ {TARGETS['per_viewer_ratio']}× {mark(theirs >= TARGETS['per_viewer_ratio'] * max(ours, 0.1))} |")
        ours_rss, theirs_rss = slope(vw["mediaweave"], "rss_mb"), slope(vw["aiortc"], "rss_mb")
        row("viewers", "RSS per added viewer (MB)", ours_rss, theirs_rss, "aiortc",
            f"≤ {TARGETS['per_viewer_rss']} MB",
            ours_rss <= TARGETS["per_viewer_rss"] if ours_rss is not None else None)
        most = max(vw["mediaweave"], key=lambda r: r["viewers"])
        if most["viewers"]:
            lowest = min(most["fps"] or [0.0])
            rows.append(f"| viewers | {most['viewers']} viewers at once: every viewer's fps ≥ 27 | "
                        f"{lowest:.1f} (lowest) | | | ≥ 27 fps, {TARGETS['most_viewers']} viewers "
                        f"{mark(lowest >= 27 and most['viewers'] >= TARGETS['most_viewers'])} |")
        by_n = {r["viewers"]: r for r in vw["aiortc"]}
        for r in vw["mediaweave"]:
            t = by_n.get(r["viewers"])
            if r["viewers"] == 0:
                continue
            row("viewers", f"{r['viewers']} viewers: service CPU (%)", r["cpu"], t and t["cpu"], "aiortc")
            row("viewers", f"{r['viewers']} viewers: lowest viewer fps", min(r["fps"] or [0.0]),
                t and min(t["fps"] or [0.0]), "aiortc")
            row("viewers", f"{r['viewers']} viewers: connected", r.get("connected"),
                t and t.get("connected"), "aiortc")
            row("viewers", f"{r['viewers']} viewers: RSS (MB)", r["rss_mb"], t and t["rss_mb"], "aiortc")
    rec = results.get("recording")
    if rec:
        ours, theirs = rec["mediaweave"], rec["aiortc"]
        row("recording one 720p30 WebRTC stream", "CPU (% of a core)", ours["cpu"], theirs["cpu"],
            "aiortc MediaRecorder", f"≤ {TARGETS['recording_cpu']} %", ours["cpu"] <= TARGETS["recording_cpu"])
        row("recording", "RSS (MB)", ours["rss_mb"], theirs["rss_mb"], "aiortc MediaRecorder")
        row("recording", "bytes written ÷ bytes received",
            ours["bytes_written"] / max(1, ours["bytes_received"]),
            theirs["bytes_written"] / max(1, theirs["bytes_received"]), "aiortc MediaRecorder")
    hk = results.get("hooks")
    if hk:
        base, rust = hk["without"]["cpu"], hk["rust_hook"]["cpu"]
        over = 100 * (rust - base) / base if base else None
        row("frame hook, 1080p30 (encoded, TCP out)", "CPU with an RGB Rust hook (%)", rust, base,
            "same pipeline, no hook")
        rows.append(f"| frame hook | overhead of the hook | {fmt(over, ' %')} | | | "
                    f"≤ {TARGETS['hook_overhead']} % {mark(over <= TARGETS['hook_overhead'] if over is not None else None)} |")
        seeds = hk["seeds_jpeg_tcp"]
        for key, how in (("python_hook", "shared memory"), ("python_hook_stream", "frames in the pipe")):
            py = hk.get(key)
            if not py:
                continue
            row(f"external Python hook, 1080p30, {how}", "CPU, service + script (%)", py["cpu"], seeds["cpu"],
                "OpenCV JPEG over TCP")
            row(f"external Python hook, {how}", "frames processed per second", py["fps"], seeds["fps"],
                "OpenCV JPEG over TCP")
            if py["fps"] and seeds["fps"]:
                ours, theirs = py["cpu"] / py["fps"], seeds["cpu"] / seeds["fps"]
                target = key == "python_hook"
                row(f"external Python hook, {how}", "CPU per processed frame (% of a core · s)",
                    ours, theirs, "OpenCV JPEG over TCP", "≤ 0.5× the pair" if target else "",
                    ours <= TARGETS["external_hook_ratio"] * theirs if target else None)
    ov = results.get("overhead")
    if ov:
        ours, theirs = ov["mediaweave"]["cpu"], ov["gst_launch"]["cpu"]
        over = 100 * (ours - theirs) / theirs if theirs else None
        row("service overhead, raw launch line", "CPU (%)", ours, theirs, "gst-launch-1.0",
            f"≤ +{TARGETS['service_overhead']} %", over <= TARGETS["service_overhead"] if over is not None else None)
        row("service overhead", "RSS (MB)", ov["mediaweave"]["rss_mb"], ov["gst_launch"]["rss_mb"], "gst-launch-1.0")
    tu = results.get("tutorial")
    if tu:
        tutorial_rows(tu, row)
    rl = results.get("relay")
    if rl:
        relay_rows(rl, row, rows)
    rm = results.get("rooms")
    if rm:
        rooms_rows(rm, row, rows)
    rc = results.get("reach")
    if rc:
        reach_rows(rc, row, rows)
    ad = results.get("adaptive")
    if ad:
        adaptive_rows(ad, rows)

    lines = [
        "# mediaweave benchmark",
        "",
        f"{meta['date']} · {meta['cores']} cores ({meta['cpu']}) · {meta['mediaweave']} ({meta['profile']} build) · "
        f"{meta['gstreamer']} · aiortc {meta['aiortc']} · Python {meta['python']}"
        + (" · **quick run: short windows, few trials; a smoke check, not figures to quote**" if quick else "")
        + (f" · only: {', '.join(meta['only'])}" if meta.get("only") else ""),
        "",
        "CPU is % of one core used by the service's own processes (from /proc), viewers and publishers "
        "excluded. Ratio is mediaweave ÷ peer: below 1 means mediaweave needs less (time, CPU, memory).",
        "",
        "| scenario | metric | mediaweave | peer | ratio | target |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "![latency CDF and CPU against viewers](results.png)",
        "",
    ]
    for name, error in meta.get("errors", {}).items():
        lines.append(f"- scenario `{name}` did not complete: {error}")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    lat = dict(results.get("latency") or {})
    lat.update({f"relay: {k}": v for k, v in ((results.get("relay") or {}).get("latency") or {}).items()})
    for name, values in lat.items():
        if values:
            xs = sorted(values)
            a.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=name)
    a.set_xlabel("glass-to-glass latency (ms)")
    a.set_ylabel("fraction of frames")
    a.set_title("Latency CDF, 720p30")
    a.grid(alpha=0.3)
    if a.lines:
        a.legend()
    vw = dict(results.get("viewers") or {})
    vw.update({f"relay: {k}": v for k, v in ((results.get("relay") or {}).get("viewers") or {}).items()})
    for name, rows in vw.items():
        if rows:
            b.plot([r["viewers"] for r in rows], [r["cpu"] for r in rows], marker="o", label=name)
    b.set_xlabel("concurrent viewers")
    b.set_ylabel("service CPU (% of one core)")
    b.set_title("CPU against viewers, 720p30 2 Mb/s")
    b.grid(alpha=0.3)
    if b.lines:
        b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


SCENARIOS = {
    "latency": scenario_latency,
    "ttff": scenario_ttff,
    "viewers": scenario_viewers,
    "recording": scenario_recording,
    "hooks": scenario_hooks,
    "overhead": scenario_overhead,
    "relay": scenario_relay,
    "rooms": scenario_rooms,
    "reach": scenario_reach,
    "adaptive": scenario_adaptive,
    "tutorial": scenario_tutorial,
}

# aiortc is saturated (6 fps) by 30 viewers already: it is measured up to there. Its relay
# encodes 720p once per viewer: a few viewers fill this machine's two cores.
FULL = {"latency_frames": 600, "ttff_trials": 20, "viewer_counts": [1, 10, 25, 50, 75, 100],
        "peer_viewer_counts": [1, 5, 10, 20, 30], "window": 10, "record_seconds": 20,
        "relay_frames": 600, "relay_viewer_counts": [1, 10, 20, 30], "relay_peer_viewer_counts": [1, 2, 3],
        "reach_counts": [5, 10, 20], "reach_window": 15, "reach_frames": 600, "reach_skip": 30,
        "reach_playbin3": True, "reach_edge_segments": 10, "reach_timeout": 40, "reach_hls_starts": 4,
        "reach_hlsjs_sync1": True, "adaptive_viewers": 20, "adaptive_shaped": 7, "adaptive_settle": 30,
        "webrtcsink": True}
QUICK = {"latency_frames": 120, "ttff_trials": 2, "viewer_counts": [1, 3], "peer_viewer_counts": [1, 3],
         "window": 3, "record_seconds": 6,
         "relay_frames": 90, "relay_viewer_counts": [1, 4], "relay_peer_viewer_counts": [],
         "reach_counts": [1, 5], "reach_window": 2, "reach_frames": 30, "reach_skip": 5,
         "reach_playbin3": False, "reach_edge_segments": 2, "reach_timeout": 15, "reach_hls_starts": 1,
         "reach_hlsjs_sync1": False, "adaptive_viewers": 3, "adaptive_shaped": 1, "adaptive_settle": 15,
         "webrtcsink": False}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--profile", default="release")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only these scenarios")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    OUT.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="mediaweave-bench-")
    meta = {**versions(args.binary), "profile": args.profile, "only": args.only or [],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "errors": {}}
    results = {}
    started = time.monotonic()
    for name, run in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        log(f"{name} ...")
        t0 = time.monotonic()
        try:
            results[name] = run(cfg, args.binary, work)
        except Exception as e:  # noqa: BLE001 - reported in the results; other scenarios go on
            meta["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"{name} failed: {e}")
        log(f"{name} took {time.monotonic() - t0:.0f} s")
    shutil.rmtree(work, ignore_errors=True)
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (OUT / "results.md").write_text(report(results, meta, args.quick))
    plot(results, OUT / "results.png")
    log(f"done in {time.monotonic() - started:.0f} s: {OUT / 'results.md'}, {OUT / 'results.png'}")
    if meta["errors"]:
        sys.exit(1)


main()
