#!/usr/bin/env python3
"""A `process` hook for the tests (with `sender_time = true`): every 10th frame, an event with
the time its sender stamped it and the time now (ns since the Unix epoch).

  [[hook]] kind = "process", command = ["python3", "tests/peers/hook_sender_time.py", LABEL]
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "examples"))
from mediaweave_frames import emit, frames  # noqa: E402

n = 0
for frame in frames():
    n += 1
    if n % 10 == 0:
        emit("sender_time", label=sys.argv[1], sender_time=frame.sender_time, now=time.time_ns(),
             width=frame.width)
