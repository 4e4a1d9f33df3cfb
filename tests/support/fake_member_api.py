"""A stand-in for the loyalty API's member routes, for the member page's browser tests.

It plays the contract of SPEC §4 "The member's page" as the page sees it: ``GET /v1/me`` and
``GET /v1/me/ledger`` answer for the member whose Zalo token is in ``X-Zalo-Access-Token``
(401 without one, or with one it does not know, as when Zalo refuses it), ``POST
/v1/me/phone`` links by a phone token it knows and answers 422 to any other, and CORS admits
the configured page origins only, preflight included. It records every request, and can be
told to answer a status (503 while "Zalo is down") or to drop connections (a network failure).
The real API's own tests prove the real thing; this proves the page against the contract.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MEMBER_PATHS = ("/v1/me", "/v1/me/ledger", "/v1/me/phone")
TOKEN_HEADER = "X-Zalo-Access-Token"


@dataclass
class Member:
    view: dict[str, Any]
    ledger: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items()
                     if key.lower() == name.lower()), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeMemberApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_OPTIONS(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeMemberApi:
    def __init__(self, allowed_origins: set[str] | None = None) -> None:
        self.allowed_origins: set[str] = set(allowed_origins or ())
        self.members: dict[str, Member] = {}
        # getPhoneNumber token -> the member (by access token) it links to: what the real API
        # finds after exchanging the phone token at Zalo.
        self.phone_links: dict[str, Member] = {}
        # Answered to every member call while set: 503 plays a Zalo or database outage.
        self.status: int | None = None
        self.drop_connections = False
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeMemberApi:
        self._server = _Server(self)
        threading.Thread(target=self._server.serve_forever, name="fake-member-api",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeMemberApi:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget members, links, failures and recorded requests (between tests)."""
        with self._lock:
            self.members.clear()
            self.phone_links.clear()
            self.status = None
            self.drop_connections = False
            self._requests.clear()

    def requests(self, path: str | None = None, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests
                    if (path is None or r.path == path) and (method is None or r.method == method)]

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self._requests.append(Request(handler.command, path, dict(handler.headers.items()),
                                          body))
        if self.drop_connections:
            # No answer at all: the browser sees the connection closed, as when the API is gone.
            handler.close_connection = True
            return
        origin = handler.headers.get("Origin")
        if handler.command == "OPTIONS":
            self._preflight(handler, origin)
            return
        status, answer = self._answer(handler.command, path, handler.headers.get(TOKEN_HEADER),
                                      body)
        self._send(handler, status, answer, origin)

    def _preflight(self, handler: _Handler, origin: str | None) -> None:
        asked = handler.headers.get("Access-Control-Request-Method")
        if origin not in self.allowed_origins or asked not in ("GET", "POST"):
            self._send(handler, 400, {"detail": "Disallowed CORS origin"}, None)
            return
        handler.send_response(200)
        handler.send_header("Access-Control-Allow-Origin", origin)
        handler.send_header("Access-Control-Allow-Methods", "GET, POST")
        handler.send_header("Access-Control-Allow-Headers", f"{TOKEN_HEADER}, Content-Type")
        handler.send_header("Access-Control-Max-Age", "600")
        handler.send_header("Vary", "Origin")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _answer(self, method: str, path: str, token: str | None,
                body: bytes) -> tuple[int, dict[str, Any]]:
        if path not in MEMBER_PATHS:
            return 404, {"detail": "Not Found"}
        if self.status is not None:
            return self.status, {"detail": f"answered {self.status} by the test"}
        member = self.members.get(token or "")
        if member is None:
            return 401, {"detail": "the Zalo access token was refused"}
        if path == "/v1/me" and method == "GET":
            return 200, member.view
        if path == "/v1/me/ledger" and method == "GET":
            return 200, {"entries": member.ledger}
        if path == "/v1/me/phone" and method == "POST":
            try:
                phone_token = json.loads(body)["token"]
            except (ValueError, KeyError, TypeError):
                return 422, {"detail": [{"field": "token", "message": "required"}]}
            linked = self.phone_links.get(phone_token)
            if linked is None:
                return 422, {"detail": "Zalo refused the phone number token"}
            self.members[token or ""] = linked
            return 200, {"customer_id": linked.view["customer_id"]}
        return 405, {"detail": "Method Not Allowed"}

    def _send(self, handler: _Handler, status: int, answer: dict[str, Any],
              origin: str | None) -> None:
        data = json.dumps(answer, ensure_ascii=False).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if origin in self.allowed_origins:
            handler.send_header("Access-Control-Allow-Origin", origin)
            handler.send_header("Vary", "Origin")
        handler.end_headers()
        handler.wfile.write(data)
