"""Read frames a mediaweave `process` hook writes to stdin; write events to stdout.

    from mediaweave_frames import frames, to_numpy, emit
    for frame in frames():
        image = to_numpy(frame)          # height x width x 3 for RGB/BGR (needs numpy)
        emit("seen", width=frame.width)  # one JSON line -> /api/events

Each frame is a 32-byte little-endian header (magic b"MWF1", width, height, format,
stride, pts in ns, payload length) followed by the pixels.
"""
import json
import struct
import sys
from typing import Iterator, NamedTuple, Optional

HEADER = struct.Struct("<4sII4sIQI")  # 32 bytes
NO_PTS = 2**64 - 1


class Frame(NamedTuple):
    width: int
    height: int
    format: str  # "RGB", "BGR", "GRAY", "I420"
    stride: int  # bytes per row of the first plane
    pts: Optional[int]  # nanoseconds
    data: bytes


def _read_exactly(stream, n):
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def frames(stream=None) -> Iterator[Frame]:
    """Frames until the service closes the pipe."""
    stream = stream or sys.stdin.buffer
    while True:
        head = _read_exactly(stream, HEADER.size)
        if head is None:
            return
        magic, width, height, fmt, stride, pts, length = HEADER.unpack(head)
        if magic != b"MWF1":
            raise ValueError(f"not a mediaweave frame header: {magic!r}")
        data = _read_exactly(stream, length)
        if data is None:
            return
        yield Frame(width, height, fmt.rstrip(b"\0").decode(), stride, None if pts == NO_PTS else pts, data)


def to_numpy(frame: Frame):
    """The image as a numpy array: H x W x 3 (RGB/BGR), H x W (GRAY, and I420's luma)."""
    import numpy as np

    rows = np.frombuffer(frame.data, dtype=np.uint8)[: frame.stride * frame.height]
    rows = rows.reshape(frame.height, frame.stride)
    if frame.format in ("RGB", "BGR"):
        return rows[:, : frame.width * 3].reshape(frame.height, frame.width, 3)
    return rows[:, : frame.width]


def emit(kind: str, **fields) -> None:
    """Reports an event; it appears on the service's /api/events stream."""
    print(json.dumps({"kind": kind, **fields}), flush=True)
