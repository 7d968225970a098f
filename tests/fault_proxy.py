"""A fault-injecting HTTP proxy for tests: a threaded ``http.server`` on 127.0.0.1 in front of the real FHIR
server, failing a chosen share of requests the way real networks and gateways do.

Which request fails, and how, is drawn from ``random.Random(f"{seed}|{method}|{path}|{n}")`` where ``n`` counts
the times that request was sent: the same run gets the same faults whatever the thread timing, and a retry of a
request draws afresh. ``rules`` fail requests whose path contains a text on purpose (always, or their first k
sends). The server's own URLs in bodies and headers are rewritten to the proxy's, so paging links stay on it.
``edits`` change the bytes of chosen answers (a resource a real server would refuse to store, served anyway).

Faults (``FAULTS``): 429 and 503 with ``Retry-After`` (0 or 1 s), a bare 500 and 503, a connection reset before
any answer, and the real 200 answer cut mid-body in four ways: the connection closed where no length was
declared (only the body's own syntax shows the cut), a ``Content-Length`` that counts only the part sent (as a
proxy that buffered a cut answer forwards it), the true ``Content-Length`` then a reset, and a chunked answer
reset before its last chunk. Also a 200 HTML error page from a gateway.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

FAULTS = ("429", "500", "503", "503-retry-after", "reset", "cut-close", "cut-declared", "cut-length",
          "cut-chunked", "html")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te",
              "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "date", "server"}


@dataclass(frozen=True)
class Rule:
    """Fail requests whose path (with query) contains ``contains`` with ``fault``: their first ``times`` sends,
    or every send when ``times`` is None."""

    contains: str
    fault: str = "500"
    times: int | None = None


@dataclass(frozen=True)
class Edit:
    """In answers to requests whose path (with query) contains ``contains``, replace ``old`` by ``new`` (at most
    ``count`` times per answer)."""

    contains: str
    old: bytes
    new: bytes
    count: int = 1


@dataclass
class FaultProxy:
    """``upstream``: the real server's base URL. ``rate``: the share of requests that fail, drawn from ``seed``
    among ``faults``. ``base``: the proxy's base URL (same path as the upstream's) once started."""

    upstream: str
    rate: float = 0.0
    seed: int = 0
    faults: tuple[str, ...] = FAULTS
    rules: tuple[Rule, ...] = ()
    edits: tuple[Edit, ...] = ()
    base: str = ""
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, path) -> sends
    injected: Counter[str] = field(default_factory=Counter)  # fault -> times
    edited: Counter[str] = field(default_factory=Counter)  # Edit.contains -> answers changed
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        up = urlsplit(self.upstream)
        self._origin = f"{up.scheme}://{up.netloc}"

    def fault_for(self, method: str, path: str) -> tuple[str | None, random.Random]:
        """The fault for this send of ``method path`` (None: forward it untouched) and the RNG for its details."""
        with self._lock:
            self.sent[(method, path)] += 1
            n = self.sent[(method, path)]
            self.requests += 1
        rng = random.Random(f"{self.seed}|{method}|{path}|{n}")
        fault = None
        for rule in self.rules:
            if rule.contains in path and (rule.times is None or n <= rule.times):
                fault = rule.fault
                break
        else:
            if rng.random() < self.rate:
                fault = rng.choice(self.faults)
        if fault is not None:
            with self._lock:
                self.injected[fault] += 1
        return fault, rng

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> requests.Response:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | {"host", "accept-encoding"}}
        sent["Accept-Encoding"] = "identity"
        return session.request(method, self._origin + path, data=body or None, headers=sent, timeout=60,
                               allow_redirects=False)

    def rewrite(self, data: bytes) -> bytes:
        return data.replace(self._origin.encode(), self._proxy_origin.encode())

    def edit(self, path: str, data: bytes) -> bytes:
        """``data`` with the ``edits`` for ``path`` made."""
        for e in self.edits:
            if e.contains in path and e.old in data:
                data = data.replace(e.old, e.new, e.count)
                with self._lock:
                    self.edited[e.contains] += 1
        return data

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without this, Nagle's algorithm and the client's
                # delayed ACK hold every answer back ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault, rng = proxy.fault_for(self.command, self.path)
                retry_after = rng.choice(["0", "1"])
                if fault == "reset":
                    return self._reset()
                if fault in ("429", "500", "503", "503-retry-after"):
                    status = int(fault[:3])
                    extra = {"Retry-After": retry_after} if fault in ("429", "503-retry-after") else {}
                    return self._send(status, {"Content-Type": "application/fhir+json", **extra},
                                      b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                                      b'"code":"transient","diagnostics":"injected fault"}]}')
                if fault == "html":
                    return self._send(200, {"Content-Type": "text/html"},
                                      b"<html><body><h1>502 Bad Gateway</h1></body></html>")
                answer = proxy.forward(self.command, self.path, dict(self.headers), body)
                headers = {k: proxy.rewrite(v.encode()).decode() for k, v in answer.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                content = proxy.edit(self.path, proxy.rewrite(answer.content))
                if fault is None or not fault.startswith("cut") or len(content) < 2:
                    return self._send(answer.status_code, headers, content)
                cut = rng.randint(1, len(content) - 1)
                self.send_response(answer.status_code)
                for k, v in headers.items():
                    self.send_header(k, v)
                if fault == "cut-close":  # no length: the client reads until the connection closes
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(content[:cut])
                    self.close_connection = True
                elif fault == "cut-declared":
                    self.send_header("Content-Length", str(cut))
                    self.end_headers()
                    self.wfile.write(content[:cut])
                elif fault == "cut-length":
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content[:cut])
                    self.wfile.flush()
                    self._reset()
                else:  # cut-chunked
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n" % (cut, content[:cut]))
                    self.wfile.flush()
                    self._reset()
                return None

            def _send(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            def _reset(self) -> None:
                """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._proxy_origin = f"http://127.0.0.1:{server.server_address[1]}"
        self.base = self._proxy_origin + urlsplit(self.upstream).path
        thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
