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
stride, pts in ns, payload length) followed by the pixels. A hook with `sender_time = true`
sends magic b"MWF2" and 8 more bytes after the header: the time the frame's sender stamped it
(ns since the Unix epoch, UTC; a jpeg-tcp source's frames have it), as `frame.sender_time`.

With `transport = "shm"` on the hook the pixels are in shared memory instead: the stream
(stdin, or the Unix socket) first carries the memory's descriptor, then a 48-byte message per
frame (the header with magic b"MWS1", the pixels' offset and a sequence number; b"MWS2" and
8 more bytes, the sender's time, with `sender_time = true`). `frame.data`
is then a view of that memory, not a copy: it stays valid until the next frame is asked for
(the service may then reuse its slot); copy it (`bytes(frame.data)`, `array.copy()`) to keep
it longer. Everything else reads the same.
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
    sender_time: Optional[int] = None  # ns since the Unix epoch (MWF2/MWS2 only)


def _read_exactly(stream, n):
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


SHM_MESSAGE = struct.Struct("<QQ")  # after the header: offset, sequence number


def _is_socket(fileno):
    import os
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(fileno).st_mode)
    except OSError:
        return False


def frames(stream=None) -> Iterator[Frame]:
    """Frames until the service closes the pipe (or the socket)."""
    if stream is None:
        if _is_socket(0):
            import os
            import socket

            # Shared memory: stdin is a socket that carries the memory's descriptor.
            yield from _from_socket(socket.socket(fileno=os.dup(0)))
            return
        stream = sys.stdin.buffer
    yield from _parse(stream, None, None)


def _parse(stream, memory, ack) -> Iterator[Frame]:
    """Frames from `stream`: pixels inline (MWF1) or in `memory` (MWS1, then `ack(seq)`)."""
    import mmap
    import os

    while True:
        head = _read_exactly(stream, HEADER.size)
        if head is None:
            return
        magic, width, height, fmt, stride, pts, length = HEADER.unpack(head)
        pts = None if pts == NO_PTS else pts
        fmt = fmt.rstrip(b"\0").decode()
        timed = magic in (b"MWF2", b"MWS2")
        if magic in (b"MWF1", b"MWF2"):
            sent = _read_exactly(stream, 8) if timed else b""
            data = _read_exactly(stream, length)
            if data is None or sent is None:
                return
            yield Frame(width, height, fmt, stride, pts, data, _sender_time(sent))
        elif magic in (b"MWS1", b"MWS2") and memory is not None:
            tail = _read_exactly(stream, SHM_MESSAGE.size + (8 if timed else 0))
            if tail is None:
                return
            offset, seq = SHM_MESSAGE.unpack(tail[:SHM_MESSAGE.size])
            sender_time = _sender_time(tail[SHM_MESSAGE.size:])
            if offset + length > len(memory["map"]):
                # The service made its memory larger (larger frames): map all of it again.
                memory["map"] = mmap.mmap(memory["fd"], os.fstat(memory["fd"]).st_size,
                                          mmap.MAP_SHARED, mmap.PROT_READ)
            yield Frame(width, height, fmt, stride, pts,
                        memoryview(memory["map"])[offset:offset + length], sender_time)
            ack(seq)  # the consumer asked for the next frame: this one's slot is free
        else:
            raise ValueError(f"not a mediaweave frame header: {magic!r}")


def _sender_time(raw):
    """The sender's time after a timed header (None: untimed, or the frame has none)."""
    if len(raw) != 8:
        return None
    (t,) = struct.unpack("<Q", raw)
    return None if t == NO_PTS else t


def _from_socket(sock) -> Iterator[Frame]:
    """Frames from a connected socket; a hello with a descriptor first means shared memory."""
    import mmap
    import socket

    data, fds, _, _ = socket.recv_fds(sock, 16, 1)
    memory = None
    if fds and data[:4] == b"MWR1":
        fd = fds[0]
        import os

        size = os.fstat(fd).st_size
        memory = {"fd": fd, "map": mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) if size else b""}
        data = data[16:]
    stream = sock.makefile("rb")

    class Joined:
        """What recv_fds read first, then the rest of the stream."""

        def __init__(self, first):
            self.first = first

        def read(self, n):
            if self.first:
                out, self.first = self.first[:n], self.first[n:]
                return out
            return stream.read(n)

    def ack(seq):
        sock.sendall(struct.pack("<Q", seq))

    yield from _parse(Joined(data), memory, ack)


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
    with sock:
        yield from _from_socket(sock)


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
        data = rows.tobytes() + bytes(frame.data[frame.stride * frame.height :])
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
