"""Read frames a mediaweave `process` hook writes to stdin; write events to stdout.

    from mediaweave_frames import frames, to_numpy, emit
    for frame in frames():
        image = to_numpy(frame)          # height x width x 3 for RGB/BGR (needs numpy)
        emit("seen", width=frame.width)  # one JSON line -> /api/events

A transform hook (mode = "transform") sends every frame back, changed:

    for frame in frames():
        send(frame, 255 - to_numpy(frame))

A `socket` hook serves the same frames to any number of readers:

    for frame in subscribe("127.0.0.1:7000"):   # or "unix:/path/to/socket"
        ...

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


def subscribe(address: str) -> Iterator[Frame]:
    """Frames from a `socket` hook at "HOST:PORT" or "unix:PATH", until it closes."""
    import socket

    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address[len("unix:"):])
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host.strip("[]"), int(port)))
    with sock, sock.makefile("rb") as stream:
        yield from frames(stream)


def send(frame: Frame, image) -> None:
    """Transform hooks: writes `frame` back with `image` as its pixels (same size and format).

    `image` is what to_numpy() gave (changed, or a new array of that shape) or raw bytes of the
    whole payload. Rows are padded back to the frame's stride; I420's chroma is kept.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        import numpy as np

        flat = np.ascontiguousarray(image, dtype=np.uint8).reshape(frame.height, -1)
        if flat.shape[1] > frame.stride:
            raise ValueError(f"image rows of {flat.shape[1]} bytes do not fit the frame's {frame.stride}")
        rows = np.frombuffer(frame.data, dtype=np.uint8)[: frame.stride * frame.height]
        rows = rows.reshape(frame.height, frame.stride).copy()
        rows[:, : flat.shape[1]] = flat
        data = rows.tobytes() + frame.data[frame.stride * frame.height :]
    pts = NO_PTS if frame.pts is None else frame.pts
    fmt = frame.format.encode().ljust(4, b"\0")
    out = sys.stdout.buffer
    out.write(HEADER.pack(b"MWF1", frame.width, frame.height, fmt, frame.stride, pts, len(data)))
    out.write(data)
    out.flush()


def emit(kind: str, **fields) -> None:
    """Reports an event; it appears on the service's /api/events stream."""
    sys.stdout.write(json.dumps({"kind": kind, **fields}) + "\n")
    sys.stdout.flush()
