#!/usr/bin/env python3
"""The tutorials' JPEG-over-TCP programs, written the way the tutorials write them.

  send HOST PORT VIDEO [ascii-base64|u32be] [--stamp]
      OpenCV reads frames from VIDEO (looping), resizes each to 480x315, encodes it as JPEG at
      quality 90 and sends it: ascii-base64 as the tutorial does (base64, then
      `length.ljust(64)`, the data and `time.ljust(64)` with `sock.send`), or u32be (a 4-byte
      big-endian length, then the JPEG); 0.02 s between frames; reconnects every second.
      --stamp (the benchmark's addition) draws the time into each frame before it is encoded
      (peerkit's stamp, blocks of 12 pixels), for latency to the screen.
  recv PORT COUNT_FILE [--stamps]
      listens like the tutorial's "AI server": reads the 64-byte length, the base64 data and
      the 64-byte time, `cv2.imdecode`s the frame; writes {"frames": n, "width": w,
      "height": h} to COUNT_FILE as frames decode (with --stamps also "latencies_ms": now
      minus the stamp drawn in each frame, the latest 2000; then written every 10th frame).
"""
import base64
import datetime
import json
import os
import socket
import struct
import sys
import time

import cv2
import numpy as np

from peerkit import STAMP_BITS, draw_stamp, read_stamp

# The stamp's blocks: 40 of them fit the tutorial's 480-pixel width.
STAMP_BLOCK = 12


def now_ms():
    return int(time.time() * 1000) & ((1 << STAMP_BITS) - 1)


def send(host, port, video, framing, stamp=False):
    while True:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.connect((host, port))
            capture = cv2.VideoCapture(video)
            while True:
                ret, frame = capture.read()
                if not ret:
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                frame = cv2.resize(frame, (480, 315))
                if stamp:
                    sent_at = now_ms()
                    for channel in range(3):
                        draw_stamp(frame[:, :, channel], sent_at, STAMP_BLOCK)
                encode_param = [int(cv2.IMWRITE_JPEG_QUALITY), 90]
                result, imgencode = cv2.imencode(".jpg", frame, encode_param)
                if framing == "u32be":
                    data = imgencode.tobytes()
                    sock.send(struct.pack(">I", len(data)))
                    sock.send(data)
                else:
                    data = np.array(imgencode)
                    stringData = base64.b64encode(data)
                    length = str(len(stringData))
                    sock.send(length.ljust(64).encode())
                    sock.send(stringData)
                    stime = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
                    sock.send(stime.ljust(64).encode())
                time.sleep(0.02)
        except OSError:
            time.sleep(1)


def recvall(sock, count):
    buf = b""
    while count:
        newbuf = sock.recv(count)
        if not newbuf:
            return None
        buf += newbuf
        count -= len(newbuf)
    return buf


def recv(port, count_file, stamps=False):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    print(json.dumps({"listening": port}), flush=True)
    frames = 0
    latencies = []
    while True:
        conn, addr = server.accept()
        while True:
            length = recvall(conn, 64)
            if length is None:
                break
            stringData = recvall(conn, int(length.decode("utf-8").strip()))
            stime = recvall(conn, 64)
            if stringData is None or stime is None:
                break
            data = np.frombuffer(base64.b64decode(stringData), np.uint8)
            decimg = cv2.imdecode(data, 1)
            if decimg is None:
                continue
            frames += 1
            seen = {"frames": frames, "width": decimg.shape[1], "height": decimg.shape[0]}
            if stamps:
                latency = (now_ms() - read_stamp(decimg[:, :, 1], STAMP_BLOCK)) % (1 << STAMP_BITS)
                if latency < 10_000:  # anything else is not a stamp
                    latencies = (latencies + [latency])[-2000:]
                seen["latencies_ms"] = latencies
                if frames % 10:
                    continue  # the file is written every 10th frame: writing costs as much
            # Written whole, then renamed: a reader never sees half a file.
            with open(count_file + ".new", "w") as f:
                json.dump(seen, f)
            os.replace(count_file + ".new", count_file)
        conn.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if args[0] == "send":
        send(args[1], int(args[2]), args[3], args[4] if len(args) > 4 else "ascii-base64", "--stamp" in flags)
    else:
        recv(int(args[1]), args[2], "--stamps" in flags)
