"""An OIDC provider on loopback, enough for Kafka's SASL/OAUTHBEARER: a JWKS and a client-credentials token
endpoint issuing RS256 JWTs. The broker checks the tokens against the JWKS as it would a real one's.

Runs in a thread of the calling process, so tests can read what it issued and refused, and make it
fail or stall on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Issued:
    client_id: str
    claims: dict[str, Any]
    at: float  # time.monotonic() when issued


@dataclass
class LocalOidc:
    clients: dict[str, str]  # client id -> secret
    audience: str = "kafka"
    lifetime_s: int = 20
    issuer_url: str | None = None  # the `iss` claim; its own URL by default
    send_expires_in: bool = True  # without it, clients must read the JWT's exp
    delay_s: float = 0.0  # before every token answer: a slow endpoint
    # Answers given instead of a token, first in first out: (HTTP status, JSON body, or a str sent as is).
    forced: list[tuple[int, dict[str, Any] | str]] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (status, OAuth error)
    requests: int = 0

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:12]
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "start() first"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.issuer_url or self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def start(self) -> LocalOidc:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="local-oidc", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def jwks(self) -> dict[str, Any]:
        public = self.key.public_key().public_numbers()
        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": _uint(public.n), "e": _uint(public.e)}
        return {"keys": [key]}

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def grant(self, authorization: str | None, form: dict[str, list[str]]) -> tuple[int, dict[str, Any] | str]:
        """The token endpoint's answer (RFC 6749 §4.4 and §5): a token, or an error and its status."""
        with self.lock:
            self.requests += 1
            if self.forced:
                return self.forced.pop(0)
        client_id = _basic_client(authorization, self.clients)
        if client_id is None:
            return self._refuse(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != ["client_credentials"]:
            return self._refuse(400, "unsupported_grant_type", "only client_credentials")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        if form.get("scope"):  # Kafka refuses an empty scope claim
            claims["scope"] = " ".join(form["scope"])
        with self.lock:
            self.issued.append(Issued(client_id, claims, time.monotonic()))
        answer: dict[str, Any] = {"access_token": self.sign(claims), "token_type": "Bearer"}
        if self.send_expires_in:
            answer["expires_in"] = self.lifetime_s
        return 200, answer

    def _refuse(self, status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.refused.append((status, error))
        return status, {"error": error, "error_description": description}


def _basic_client(authorization: str | None, clients: dict[str, str]) -> str | None:
    """The client id if the Basic credentials match (id and secret form-encoded first: RFC 6749 §2.3.1)."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except ValueError:
        return None
    client_id, secret = unquote_plus(user), unquote_plus(password)
    return client_id if client_id in clients and clients[client_id] == secret else None


def _handler(oidc: LocalOidc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/jwks":
                self._send(200, oidc.jwks())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path != "/token":
                self._send(404, {"error": "not_found"})
                return
            if oidc.delay_s:
                time.sleep(oidc.delay_s)
            status, answer = oidc.grant(self.headers.get("Authorization"), parse_qs(body))
            with contextlib.suppress(ConnectionError):  # a client that gave up waiting (the timeout tests)
                self._send(status, answer)

        def _send(self, status: int, answer: dict[str, Any] | str) -> None:
            raw = isinstance(answer, str)
            payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if raw else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="token"')
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests read `issued` and `refused`, not an access log

    return Handler
