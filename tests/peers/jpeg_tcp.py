#!/usr/bin/env python3
"""The seeds' way of getting frames to processing code, for the benchmark to compare with: OpenCV
frames JPEG-encoded and sent length-prefixed over a raw TCP socket, decoded at the other end.

  recv PORT COUNT_FILE   prints {"listening": PORT}, accepts one sender, decodes every frame and
                         takes its mean (the same work as tests/peers/hook_consumer.py); writes
                         {"frames": n} to COUNT_FILE
  send PORT [--width 1920 --height 1080 --fps 30]   a moving test picture, paced to --fps
"""
import argparse
import json
import socket
import struct
import time

import cv2
import numpy as np


def recv_exactly(conn, n):
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(port, count_file):
    server = socket.create_server(("127.0.0.1", port))
    print(json.dumps({"listening": port}), flush=True)
    conn, _ = server.accept()
    frames = 0
    while True:
        head = recv_exactly(conn, 4)
        if head is None:
            break
        data = recv_exactly(conn, struct.unpack("<I", head)[0])
        if data is None:
            break
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        float(image.mean())
        frames += 1
        if frames % 15 == 0:
            with open(count_file, "w") as f:
                json.dump({"frames": frames}, f)


def send(port, width, height, fps):
    conn = socket.create_connection(("127.0.0.1", port))
    # Like videotestsrc's ball: a flat picture with one moving disc, drawn per frame.
    base = np.full((height, width, 3), 64, np.uint8)
    period, n, start = 1.0 / fps, 0, time.monotonic()
    while True:
        image = base.copy()
        x = int((n * 12) % width)
        cv2.circle(image, (x, height // 2), height // 10, (255, 255, 255), -1)
        ok, jpeg = cv2.imencode(".jpg", image)
        if not ok:
            continue
        conn.sendall(struct.pack("<I", len(jpeg)) + jpeg.tobytes())
        n += 1
        delay = start + n * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["send", "recv"])
ap.add_argument("port", type=int)
ap.add_argument("count_file", nargs="?")
ap.add_argument("--width", type=int, default=1920)
ap.add_argument("--height", type=int, default=1080)
ap.add_argument("--fps", type=float, default=30)
args = ap.parse_args()
if args.mode == "recv":
    receive(args.port, args.count_file)
else:
    send(args.port, args.width, args.height, args.fps)
