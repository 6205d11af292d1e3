"""The part of the kubelet API that ``kubectl logs`` needs: ``GET /containerLogs/<ns>/<pod>/<container>``
over HTTPS on the node's kubelet port (``status.daemonEndpoints.kubeletEndpoint``); the
apiserver proxies ``pods/log`` there. Query: ``follow``, ``previous``, ``tailLines``,
``limitBytes``, ``timestamps`` (ignored: the logs carry none)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# (namespace, pod, container, previous) -> (log file, still running?) or None
Resolver = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]


class LogServer:
    def __init__(self, host: str, cert: Path, key: Path, resolve: Resolver):
        resolver = resolve

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served")
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                found = resolver(parts[1], parts[2], parts[3], query.get("previous") == "true")
                if found is None:
                    self.send_error(404, f"container {parts[3]!r} of pod {parts[1]}/{parts[2]} has no logs on this node")
                    return
                path, alive = found
                data = path.read_bytes() if path.exists() else b""
                if "tailLines" in query:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else b""
                if "limitBytes" in query:
                    data = data[: int(query["limitBytes"])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(data)
                offset = path.stat().st_size if path.exists() else 0
                while query.get("follow") == "true" and alive():
                    time.sleep(0.5)
                    if path.exists() and path.stat().st_size > offset:
                        with open(path, "rb") as fh:
                            fh.seek(offset)
                            more = fh.read()
                        offset += len(more)
                        if not self._chunk(more):
                            return
                self._write(b"0\r\n\r\n")

            def _chunk(self, data: bytes) -> bool:
                return not data or self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            def _write(self, raw: bytes) -> bool:
                try:
                    self.wfile.write(raw)
                    self.wfile.flush()
                    return True
                except OSError:
                    return False

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="kubelet-logs", daemon=True)

    def start(self) -> LogServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
