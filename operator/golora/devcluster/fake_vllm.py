"""A STAND-IN for vLLM's ``GET /v1/models``, and nothing else: no model, no inference.

The local control plane runs no pods, so nothing answers the operator's serving probe.
This small HTTP server (127.0.0.1, a free port) answers what a vLLM pod started from a
Deployment's *current* container arguments would list: the served base model names and one
card per ``--lora-modules`` value (when ``--enable-lora`` is set), shaped like vLLM's
answer (``id``, ``root``, ``parent``; see ``golora.vllm.models_listing``). It reads the
Deployment from the apiserver on every request, so it reflects golora's patch as soon as
it is written -- the way a pod would after a rollout.

URL layout: ``/<namespace>/<deployment>/v1/models`` (container by name, default ``vllm``,
overridable with ``?container=``). Point the operator at it with
``GOLORA_MODELS_URL=<url>/{namespace}/{deployment}`` (see ``golora.handlers.adapterserving``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes

from ..builders import serving as sv


class FakeVLLM:
    """``with FakeVLLM(api_client) as fake: fake.url`` -- see the module docstring.

    ``hide``: adapter names to leave out of every answer (to test a server that has not
    loaded an adapter).
    """

    def __init__(self, api: kubernetes.client.ApiClient, container: str = "vllm"):
        self.api = api
        self.container = container
        self.hide: set[str] = set()
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def template(self) -> str:
        """The value for GOLORA_MODELS_URL."""
        return self.url + "/{namespace}/{deployment}"

    def listing(self, namespace: str, deployment: str, container: str) -> dict[str, Any] | None:
        try:
            dep = kubernetes.client.AppsV1Api(self.api).read_namespaced_deployment(deployment, namespace)
        except kubernetes.client.ApiException:
            return None
        body = self.api.sanitize_for_serialization(dep)
        found, _ = sv.find_container(body, container)
        if found is None:
            return None
        listing = sv.models_for_container(found)
        listing["data"] = [card for card in listing["data"] if card["id"] not in self.hide]
        return listing

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                fake.requests.append(url.path)
                parts = [p for p in url.path.split("/") if p]
                if len(parts) != 4 or parts[2:] != ["v1", "models"]:
                    self._send(404, {"error": "use /<namespace>/<deployment>/v1/models"})
                    return
                container = parse_qs(url.query).get("container", [fake.container])[0]
                listing = fake.listing(parts[0], parts[1], container)
                if listing is None:
                    self._send(404, {"error": f"no Deployment {parts[0]}/{parts[1]} with container {container}"})
                else:
                    self._send(200, listing)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        return Handler

    def start(self) -> FakeVLLM:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-vllm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
