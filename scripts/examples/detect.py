#!/usr/bin/env python3
"""Example mediaweave hook: motion and brightness of live frames, with OpenCV.

[[hook]]
kind = "process"
command = ["python3", "scripts/examples/detect.py"]
format = "RGB"
width = 320
height = 240
"""
import cv2

from mediaweave_frames import emit, frames, to_numpy

previous = None
for n, frame in enumerate(frames()):
    gray = cv2.cvtColor(to_numpy(frame), cv2.COLOR_RGB2GRAY)
    if previous is not None and n % 10 == 0:
        motion = float(cv2.absdiff(gray, previous).mean())
        emit("motion", motion=motion, brightness=float(gray.mean()), frame=n, pts=frame.pts)
    previous = gray
