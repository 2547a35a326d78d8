"""A python-socketio chat client, as the Flask-SocketIO tutorials write one, driven by the tests.

    socketio_chat.py URL [--token TOKEN]

URL is the service's base with the chat's query, e.g. http://127.0.0.1:8080?room=cam. The client
connects (Engine.IO polling, then upgraded to WebSocket, python-socketio's default), prints
{"ready": true, "sid": ...}, then one JSON line per `chat_message` it hears:
{"heard": TEXT}. Commands on stdin, one per line:
    say TEXT     emits `chat_message` with TEXT
    burst N      emits N lines ("burst 1" .. "burst N") at once
    quit         disconnects and exits
A refused connection prints {"refused": REASON} and exits 1.
"""

import argparse
import json
import sys

import socketio


def out(obj):
    print(json.dumps(obj), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--token")
    args = ap.parse_args()

    sio = socketio.Client()

    @sio.on("chat_message")
    def on_message(data):
        out({"heard": data})

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        sio.connect(args.url, headers=headers, wait_timeout=10)
    except socketio.exceptions.ConnectionError as e:
        out({"refused": str(e)})
        sys.exit(1)
    out({"ready": True, "sid": sio.sid, "transport": sio.transport()})
    for line in sys.stdin:
        command, _, rest = line.rstrip("\n").partition(" ")
        if command == "say":
            sio.emit("chat_message", rest)
        elif command == "burst":
            for i in range(int(rest)):
                sio.emit("chat_message", f"burst {i + 1}")
        elif command == "quit":
            break
    sio.disconnect()


if __name__ == "__main__":
    main()
