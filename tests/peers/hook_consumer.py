#!/usr/bin/env python3
"""A `process` hook for the benchmark: takes every frame as a numpy array and its mean (the same
work tests/peers/jpeg_tcp.py does after decoding), and writes {"frames": n} to COUNT_FILE.

  [[hook]] kind = "process", command = ["python3", "tests/peers/hook_consumer.py", COUNT_FILE]
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "examples"))
from mediaweave_frames import frames, to_numpy  # noqa: E402

count_file = sys.argv[1]
n = 0
for frame in frames():
    float(to_numpy(frame).mean())
    n += 1
    if n % 15 == 0:
        with open(count_file, "w") as f:
            json.dump({"frames": n}, f)
