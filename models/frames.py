"""WebSocket text frames built once for many sockets: the JSON and the frame header are made once
per event, not once per client (views/sockets.py writes them; tests/test_chat.py checks the bytes
against Tornado's own write_message)."""

import json
import struct

PING = b"\x89\x00"  # a ping frame without payload, the same bytes for every client


def encode(event):
    """(WebSocket text frame, JSON payload) for an event."""
    payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    n = len(payload)
    # RFC 6455 §5.2: FIN + text opcode, no mask (servers never mask), then a 7-bit, 16-bit or
    # 64-bit length.
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload, payload
