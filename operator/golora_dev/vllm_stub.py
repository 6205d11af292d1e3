"""A STAND-IN for a vLLM server process, for the many tests that need a model server Pod but
not a model: ``python -m golora_dev.vllm_stub vllm serve MODEL --port 8000 ...``.

It reads its own command line the way golora reads a Deployment's (``vllm serve M`` or
``python -m vllm.entrypoints.openai.api_server --model M``), refuses to start when a
``--lora-modules`` path holds no adapter (as vLLM exits at start), and then answers
``/health`` and ``/v1/models`` with the served names and adapters on ``--host``/``--port``.
No inference. The node agent runs it for vLLM images when the real vLLM is not wanted.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from golora import vllm
from golora.vllm import parse_invocation


def models_for_container(container: dict) -> dict:
    """What ``GET /v1/models`` of a vLLM (and of this stand-in) running a container's command
    line lists."""
    inv = parse_invocation(container.get("command"), container.get("args"))
    return vllm.models_listing(inv.model or "", inv.served_model_names, inv.lora_modules if inv.lora_enabled else [])


def listing_for(argv: list[str]) -> tuple[dict, str, int]:
    inv = parse_invocation(argv, [])
    mods = inv.lora_modules if inv.lora_enabled else []
    for mod in mods:
        if not (Path(mod.path) / vllm.ADAPTER_CONFIG).is_file():
            raise SystemExit(f"ValueError: Loading lora {mod.name} failed: No adapter found for {mod.path}")
    listing = vllm.models_listing(inv.model or "", inv.served_model_names, mods)
    return listing, inv.value("--host") or "0.0.0.0", inv.port or vllm.DEFAULT_PORT


def main(argv: list[str]) -> int:
    listing, host, port = listing_for(argv)
    body = json.dumps(listing).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/v1/models"):
                self._send(200, body)
            elif self.path in ("/health", "/ping"):
                self._send(200, b"")
            else:
                self._send(404, b'{"error": "not found"}')

        def _send(self, code: int, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"vllm stand-in serving {vllm.listed_model_ids(listing)} on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:]))
