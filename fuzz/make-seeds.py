#!/usr/bin/env python3
"""Writes the seed inputs in fuzz/seeds/TARGET/: one small valid input per thing each parser
reads, named by what it is. The fuzzer mutates these; tests/fuzz_regressions.rs replays them."""
import os
import struct

os.chdir(os.path.dirname(os.path.abspath(__file__)))


def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def frame(fin, opcode, payload, key=b"\x12\x34\x56\x78"):
    """A masked client frame."""
    out = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    out += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return out + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


upgrade = (
    "GET /ws?token=abc HTTP/1.1\r\nHost: pi.local:8080\r\nUpgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://pi.local:8080\r\n"
    "Cookie: a=1; earshot_token=def\r\nAuthorization: Bearer ghi\r\n\r\n"
)
write("http_request", "get-keep-alive", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
write(
    "http_request",
    "post-login-json",
    "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    'Content-Length: 19\r\n\r\n{"password":"nope"}',
)
write(
    "http_request",
    "pipelined-two",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
)
write("http_request", "upgrade", upgrade)
write("upgrade", "upgrade-with-credentials", upgrade)
write("upgrade", "upgrade-ipv6-origin", upgrade.replace("pi.local:8080", "[::1]:8080"))
write("credentials", "cookie-header", 'theme=dark; earshot_token="abc-DEF_123"; x')
write("credentials", "bearer", "Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
write("credentials", "query", "a=1&token=g%2Dh+i&auth=message")
write("credentials", "origin", "HTTPS://Radio.Example.org:443/")
write("login_body", "json", b"\x01" + b'{"password":"p w"}')
write("login_body", "form", b"\x03" + b"password=p+w%21&x=1")
write("client_message", "ping", '{"type":"ping","id":{"n":[1,2]}}')
write("client_message", "login", '{"type":"login","password":"pw"}')
write(
    "ws_frames",
    "ping-text-then-close",
    frame(1, 1, b'{"type":"ping","id":1}') + frame(1, 9, b"hi") + frame(1, 8, b"\x03\xe8bye"),
)
write("ws_frames", "fragmented-text", frame(0, 1, b'{"type":') + frame(1, 0, b'"ping"}'))


def server_frame(fin, opcode, payload):
    """An unmasked server frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    return head + (bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n)) + payload


chunk = struct.pack("<QQ", 89765358081, 1795308454909833) + b"\x01\x00\xff\xff" * 60
write(
    "server_frames",
    "hello-chunk-ping-close",
    server_frame(1, 1, b'{"type":"hello","codec":"pcm_s16le","seq":89765358081}')
    + server_frame(1, 2, chunk)
    + server_frame(1, 9, b"")
    + server_frame(1, 8, b"\x03\xe8bye"),
)
write("server_frames", "fragmented-text", server_frame(0, 1, b'{"type":') + server_frame(1, 0, b'"pong"}'))
samples = [0, 1000, -1000, 32767, -32768, 5, -5, 0, 1, -1]
data = b"".join(struct.pack("<h", s) for s in samples)
fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
wav = (
    b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
    + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
)
write("source_file", "wav-8000Hz-mono-16bit-10-samples.wav", wav)
