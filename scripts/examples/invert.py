#!/usr/bin/env python3
"""Example transform hook: the colour negative of every frame, which the outputs then carry.
Frames are RGB (the default format); with I420 or GRAY8 only the luma is inverted.

[[hook]]
kind = "process"
mode = "transform"
command = ["python3", "scripts/examples/invert.py"]
"""
from mediaweave_frames import frames, send, to_numpy

for frame in frames():
    send(frame, 255 - to_numpy(frame))
