"""Test helpers: a local HTTPS apiserver stand-in for status patches, and config builders."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A CA-flagged self-signed certificate for 127.0.0.1/localhost (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "golora-test-apiserver")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class StatusServer:
    """Records PATCH requests; ``responses`` is a queue of status codes to answer with (then 200)."""

    def __init__(self, directory: Path, token: str = "test-token"):
        self.requests: list[dict[str, Any]] = []
        self.responses: list[int] = []
        self.lock = threading.Lock()
        self.token = token
        cert, key = self_signed_cert(directory)
        self.sa_dir = directory / "serviceaccount"
        self.sa_dir.mkdir()
        (self.sa_dir / "token").write_text(token + "\n")
        (self.sa_dir / "ca.crt").write_bytes(cert.read_bytes())
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    code = server.responses.pop(0) if server.responses else 200
                    server.requests.append({
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(body or b"{}"),
                        "code": code,
                    })
                payload = b"{}" if code == 200 else b'{"kind":"Status","message":"injected"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests if r["code"] == 200]

    def progress(self) -> list[dict]:
        return [b["status"]["progress"] for b in self.bodies() if "progress" in b.get("status", {})]

    def results(self) -> list[dict]:
        return [b["status"]["result"] for b in self.bodies() if "result" in b.get("status", {})]


def trainer_config(store: Path, *, train: str, eval_: str | None = None, output: str = "adapters/ns/demo",
                   model_path: str | None = None, spec: dict | None = None, **extra) -> dict:
    """A TrainerConfig document (camelCase) the way the operator builds it."""
    base_spec: dict[str, Any] = {
        "baseModel": {"path": "models/tiny"},
        "dataPath": train,
        "training": {"maxSteps": 10, "loggingSteps": 2, "checkpointSteps": 5, "effectiveBatchSize": 4,
                     "learningRate": 1e-3, "maxSeqLength": 512},
        "qualityGate": {"prompts": 4, "maxNewTokens": 48},
    }
    for key, value in (spec or {}).items():
        if isinstance(value, dict) and isinstance(base_spec.get(key), dict) and key != "baseModel":
            base_spec[key] = {**base_spec[key], **value}
        else:
            base_spec[key] = value
    doc = {
        "spec": base_spec,
        "storeRoot": str(store),
        "trainPath": train,
        "evalPath": eval_,
        "outputPath": output,
        "modelPath": model_path,
        "extractorBinary": extra.pop("extractor_binary", "golora-extract-not-installed"),
    }
    doc.update(extra)
    return doc
