"""A real upstream HTTP server for the proxy tests.

usage: proxy_upstream.py PORT LOGFILE NAME

* GET /health -> 200 "ok"
* GET /download/eicar, /download/clean -> a body to download
* GET /chunked -> a chunked body (extensions, a trailer), keep-alive
* GET /until-close -> a body without a length, ended by closing
* GET /bytes/N -> N bytes (SHA-256 of "N:0", "N:1", ... concatenated), with Content-Length
* GET anything else -> 200 JSON {server, path, headers}
* HEAD -> the GET's head without its body
* POST/PUT/PATCH -> reads the body (Content-Length or chunked), appends
  "METHOD PATH SHA256 LEN" to LOGFILE, answers JSON {server, sha256, len}
* Upgrade: websocket -> 101, then echoes raw bytes until the peer closes
"""
import base64
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG, NAME = int(sys.argv[1]), sys.argv[2], sys.argv[3]
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            acc = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", acc)
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        if self.path == "/health":
            return self.reply(200, b"ok\n", "text/plain")
        if self.path == "/download/eicar":
            return self.reply(200, EICAR, "application/octet-stream")
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for i, part in enumerate([b"first chunk\n", b"second;\r\n", b"x" * 70000]):
                self.wfile.write(b"%x;n=%d\r\n" % (len(part), i) + part + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Checksum: 42\r\n\r\n")
            return
        if self.path == "/until-close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"no length, ends when the server closes\n" * 1000)
            self.close_connection = True
            return
        if self.path.startswith("/bytes/"):
            n = int(self.path[len("/bytes/"):])
            out = b"".join(hashlib.sha256(b"%d:%d" % (n, i)).digest() for i in range(n // 32 + 1))
            return self.reply(200, out[:n], "application/octet-stream")
        if self.path == "/download/clean":
            return self.reply(200, b"just a clean download\n" * 100, "application/octet-stream")
        body = json.dumps(
            {"server": NAME, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        ).encode()
        self.reply(200, body)

    do_HEAD = do_GET

    def read_body(self, h):
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    c = self.rfile.read(min(left, 1 << 20))
                    if not c:
                        raise IOError("truncated")
                    h.update(c)
                    n += len(c)
                    left -= len(c)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                c = self.rfile.read(min(left, 1 << 20))
                if not c:
                    raise IOError("truncated")
                h.update(c)
                n += len(c)
                left -= len(c)
        return n

    def do_POST(self):
        h = hashlib.sha256()
        n = self.read_body(h)
        with open(LOG, "a") as f:
            f.write(f"{self.command} {self.path} {h.hexdigest()} {n}\n")
        self.reply(200, json.dumps({"server": NAME, "sha256": h.hexdigest(), "len": n}).encode())

    do_PUT = do_POST
    do_PATCH = do_POST


class S(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


S(("127.0.0.1", PORT), H).serve_forever()
