"""A local stand-in for Zalo's OA, OAuth, ZNS and Graph hosts, for tests and the demo.

One HTTP server plays all four hosts (point the api, oauth, business and graph URLs at
``url``). It answers like Zalo does — HTTP 200 with an ``error`` field — checks access tokens,
enforces single-use refresh tokens, records what it accepted, and can be told to fail. As the
Graph API it knows the Mini App user tokens and phone codes it minted (``mint_user_token``,
``mint_phone_code``) and checks ``appsecret_proof``.

    python -m devtools.fake_zalo --port 8099
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loyalty.zalo.tokens import TokenPair

TOKEN_PATH = "/v4/oa/access_token"
CS_PATH = "/v3.0/oa/message/cs"
TEMPLATE_PATH = "/v3.0/oa/message/template"
QUOTA_PATH = "/v3.0/oa/quota/message"
ZNS_PATH = "/message/template"
TAG_PATH = "/v2.0/oa/tag/tagfollower"
UNTAG_PATH = "/v2.0/oa/tag/rmfollowerfromtag"
LIST_TAGS_PATH = "/v2.0/oa/tag/gettagsofoa"
GRAPH_ME_PATH = "/v2.0/me"
GRAPH_PHONE_PATH = "/v2.0/me/info"

_ZNS_PHONE = re.compile(r"84\d{9,10}", re.ASCII)
# Answer codes the fake uses itself (injected failures use whatever code they are given).
_BAD_PARAMETER = -201
_OA_INVALID_TOKEN = -216
_OA_EXPIRED_TOKEN = -220
_ZNS_INVALID_TOKEN = -124
_ZNS_BAD_PHONE = -108
_NO_RECENT_INTERACTION = -230
_OAUTH_INVALID_REFRESH_TOKEN = -14014
_OAUTH_INVALID_APP = -14002
# What graph.zalo.me answers a token it does not accept. The fake answers every Graph refusal
# (unknown, expired or forged token, wrong appsecret_proof or secret_key, bad phone code) with
# it; Zalo's codes for the other cases are not documented where we looked.
_GRAPH_SESSION_INVALID = 452

Answer = tuple[int, dict[str, Any], dict[str, str]]

# A user's last interaction with the OA, as the quota call tells it and the consultation
# message obeys it: within 48 h (free), 48 h to 7 days (paid), longer ago, never; or an
# answer a client cannot understand.
WINDOWS = {"free": timedelta(hours=1), "paid": timedelta(days=3),
           "closed": timedelta(days=30), "never": None, "garbled": None}


@dataclass
class _Failure:
    error: int | None
    http_status: int | None
    delay: float | None
    retry_after: float | None
    remaining: int
    message: str


@dataclass
class _MiniAppUser:
    zalo_id: str
    name: str | None
    oa_user_id: str | None
    expires_at: float  # time.monotonic()


@dataclass
class _PhoneCode:
    zalo_id: str
    phone: str
    expires_at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for a handler that is still sleeping through an injected delay.
    block_on_close = False
    # Many test threads connect at once; the default backlog of 5 would drop connects.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeZalo) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read the fake's records, not its access log


class FakeZalo:
    """Zalo on 127.0.0.1 in a background thread. Thread-safe; use as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app_id: str = "fake-app",
        secret_key: str = "fake-secret",
        miniapp_secret_key: str | None = None,
        expires_in: int = 90000,
    ) -> None:
        self.host = host
        self.port = port
        self.app_id = app_id
        self.secret_key = secret_key
        # The Zalo app that owns the Mini App may be another one than the OA's.
        self.miniapp_secret_key = miniapp_secret_key or secret_key
        self.expires_in = expires_in
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._valid_access: set[str] = set()
        self._expired_access: set[str] = set()
        self._valid_refresh: set[str] = set()
        self._failures: dict[str, deque[_Failure]] = {}
        self._user_failures: dict[tuple[str, str | None], int] = {}
        self._windows: dict[str, str] = {}
        self._sent: list[dict[str, Any]] = []
        self._tags: dict[str, set[str]] = {}
        self._access_log: list[tuple[str, str | None]] = []
        self._refresh_tokens_received: list[str] = []
        self._user_tokens: dict[str, _MiniAppUser] = {}
        self._phone_codes: dict[str, _PhoneCode] = {}
        self.refresh_calls = 0
        self.refresh_rejections = 0
        self.initial_tokens: TokenPair = self._issue_pair()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> FakeZalo:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeZalo:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping through an injected delay
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeZalo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeZalo is not running")
        return f"http://{self.host}:{self.port}"

    # -- what tests look at ---------------------------------------------------------------

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Accepted messages: path, user_id or phone, text/template fields, message_id, time."""
        with self._lock:
            return [dict(record) for record in self._sent]

    @property
    def tags(self) -> dict[str, set[str]]:
        with self._lock:
            return {name: set(users) for name, users in self._tags.items()}

    @property
    def access_log(self) -> list[tuple[str, str | None]]:
        """(path, access_token header) of every call but token refreshes, in arrival order."""
        with self._lock:
            return list(self._access_log)

    @property
    def refresh_tokens_received(self) -> list[str]:
        with self._lock:
            return list(self._refresh_tokens_received)

    # -- steering -------------------------------------------------------------------------

    def issue_tokens(self) -> TokenPair:
        """A new valid pair, as if the OA had been authorised again."""
        return self._issue_pair()

    def expire_tokens(self) -> None:
        """Every access token issued so far answers -220 from now on."""
        with self._lock:
            self._expired_access |= self._valid_access
            self._valid_access.clear()

    def fail_next(
        self,
        path: str,
        *,
        error: int | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        retry_after: float | None = None,
        times: int = 1,
        message: str = "injected failure",
    ) -> None:
        """The next ``times`` calls to ``path`` fail: Zalo ``error`` code, or ``http_status``,
        and/or an answer ``delay`` seconds late (with neither, the late answer is normal).
        ``retry_after`` adds a Retry-After header; ``message`` is the answer's message."""
        failure = _Failure(error, http_status, delay, retry_after, times, message)
        with self._lock:
            self._failures.setdefault(path, deque()).append(failure)

    def fail_user(self, recipient: str, error: int, path: str | None = None) -> None:
        """Always answer ``error`` for this user id (or ZNS phone, as 84…), on ``path``
        only or on every path."""
        with self._lock:
            self._user_failures[(recipient, path)] = error

    def set_window(self, user_id: str, window: str) -> None:
        """The user's last interaction with the OA, one of ``WINDOWS`` (default "free").
        A consultation message outside 7 days is refused with -230, as Zalo does."""
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; one of {sorted(WINDOWS)}")
        with self._lock:
            self._windows[user_id] = window

    def clear_failures(self) -> None:
        """Forget injected failures and set windows."""
        with self._lock:
            self._failures.clear()
            self._user_failures.clear()
            self._windows.clear()

    def mint_user_token(self, zalo_id: str, *, name: str | None = None,
                        oa_user_id: str | None = None, expires_in: float = 3600) -> str:
        """A Mini App user access token (``getAccessToken``) for the app-scoped ``zalo_id``;
        with ``oa_user_id`` Graph also tells the user's id for the shop's OA."""
        token = "fake-user-" + secrets.token_urlsafe(24)
        with self._lock:
            self._user_tokens[token] = _MiniAppUser(zalo_id, name, oa_user_id,
                                                    time.monotonic() + expires_in)
        return token

    def expire_user_token(self, token: str) -> None:
        with self._lock:
            self._user_tokens[token].expires_at = time.monotonic()

    def mint_phone_code(self, access_token: str, phone: str, *, expires_in: float = 120) -> str:
        """The code ``getPhoneNumber`` gives the user of ``access_token`` for ``phone``."""
        code = "fake-phone-" + secrets.token_urlsafe(16)
        with self._lock:
            self._phone_codes[code] = _PhoneCode(self._user_tokens[access_token].zalo_id, phone,
                                                 time.monotonic() + expires_in)
        return code

    # -- request handling -----------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if path == TOKEN_PATH:
            self._note_refresh_call(raw)
        else:
            with self._lock:
                self._access_log.append((path, handler.headers.get("access_token")))
        failure = self._take_failure(path)
        if failure is not None and failure.delay and self._stopping.wait(failure.delay):
            return
        if failure is not None and (failure.error is not None or failure.http_status):
            answer = self._injected(failure)
        elif path == TOKEN_PATH and handler.command == "POST":
            answer = self._refresh(raw, handler.headers.get("secret_key"))
        elif path in (GRAPH_ME_PATH, GRAPH_PHONE_PATH) and handler.command == "GET":
            answer = self._graph(path, handler)
        else:
            answer = self._api(handler.command, path, raw, handler.headers.get("access_token"))
        _reply(handler, *answer)

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            queue = self._failures.get(path)
            if not queue:
                return None
            failure = queue[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                queue.popleft()
            return failure

    @staticmethod
    def _injected(failure: _Failure) -> Answer:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        if failure.http_status:
            return failure.http_status, {"message": failure.message}, headers
        return 200, {"error": failure.error, "message": failure.message}, headers

    def _note_refresh_call(self, raw: bytes) -> None:
        # Counted before any injected failure: a refresh token that reached the server is
        # spent as far as the client can know.
        with self._lock:
            self.refresh_calls += 1
            self._refresh_tokens_received.append(_form(raw).get("refresh_token", ""))

    def _refresh(self, raw: bytes, secret_key: str | None) -> Answer:
        form = _form(raw)
        refresh_token = form.get("refresh_token", "")
        with self._lock:
            if secret_key != self.secret_key or form.get("app_id") != self.app_id:
                return 200, _oauth_error(_OAUTH_INVALID_APP, "Invalid app_id or secret_key"), {}
            if form.get("grant_type") != "refresh_token" or refresh_token not in (
                self._valid_refresh
            ):
                self.refresh_rejections += 1
                return 200, _oauth_error(_OAUTH_INVALID_REFRESH_TOKEN, "Invalid refresh_token"), {}
            self._valid_refresh.discard(refresh_token)  # single use
            pair = self._issue_pair_locked()
        answer = {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": str(self.expires_in),
        }
        return 200, answer, {}

    def _api(self, method: str, path: str, raw: bytes, access_token: str | None) -> Answer:
        routes = {
            ("POST", CS_PATH): self._cs_message,
            ("POST", TEMPLATE_PATH): self._template_message,
            ("POST", QUOTA_PATH): self._quota,
            ("POST", ZNS_PATH): self._zns_message,
            ("POST", TAG_PATH): self._tag,
            ("POST", UNTAG_PATH): self._untag,
            ("GET", LIST_TAGS_PATH): self._list_tags,
        }
        route = routes.get((method, path))
        if route is None:
            return 404, {"error": 404, "message": "not found"}, {}
        with self._lock:
            token_error = self._token_error_locked(access_token, zns=path == ZNS_PATH)
        if token_error is not None:
            return 200, {"error": token_error, "message": "access token is invalid"}, {}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(_BAD_PARAMETER, "body is not a JSON object")
        return route(path, body)

    def _token_error_locked(self, access_token: str | None, *, zns: bool) -> int | None:
        if access_token in self._valid_access:
            return None
        if zns:
            return _ZNS_INVALID_TOKEN
        if access_token in self._expired_access:
            return _OA_EXPIRED_TOKEN
        return _OA_INVALID_TOKEN

    def _cs_message(self, path: str, body: dict[str, Any]) -> Answer:
        user_id = _get(body, "recipient", "user_id")
        text = _get(body, "message", "text")
        if not user_id or not text:
            return _error(_BAD_PARAMETER, "recipient.user_id and message.text are required")
        with self._lock:
            window = self._windows.get(str(user_id), "free")
        if window in ("closed", "never"):
            return _error(_NO_RECENT_INTERACTION,
                          "user has not interacted with the OA in the last 7 days")
        return self._accept_message(path, body, user_id=str(user_id), text=str(text))

    def _quota(self, path: str, body: dict[str, Any]) -> Answer:
        user_id = body.get("user_id")
        if not user_id:
            return _error(_BAD_PARAMETER, "user_id is required")
        with self._lock:
            # A user refused on every path still has a window; refuse it with path=QUOTA_PATH.
            refused = self._user_failures.get((str(user_id), path))
            window = self._windows.get(str(user_id), "free")
        if refused is not None:
            return _error(refused, "refused for this user")
        if window == "garbled":
            return 200, {"error": 0, "message": "Success", "data": {"quota": "n/a"}}, {}
        age = WINDOWS[window]
        last = None if age is None else \
            str(int((datetime.now(UTC) - age).timestamp() * 1000))
        data = {"user_id": str(user_id), "last_interaction": last}
        return 200, {"error": 0, "message": "Success", "data": data}, {}

    def _template_message(self, path: str, body: dict[str, Any]) -> Answer:
        # Sources disagree on whether the user id is nested under "recipient"; take both.
        user_id = _get(body, "recipient", "user_id") or body.get("user_id")
        if not user_id or not body.get("template_id"):
            return _error(_BAD_PARAMETER, "user_id and template_id are required")
        return self._accept_message(
            path,
            body,
            user_id=str(user_id),
            template_id=body["template_id"],
            template_data=body.get("template_data") or {},
        )

    def _zns_message(self, path: str, body: dict[str, Any]) -> Answer:
        phone = str(body.get("phone") or "")
        if not _ZNS_PHONE.fullmatch(phone):
            return _error(_ZNS_BAD_PHONE, "invalid phone number")
        if not body.get("template_id"):
            return _error(_BAD_PARAMETER, "template_id is required")
        return self._accept_message(
            path,
            body,
            phone=phone,
            template_id=body["template_id"],
            template_data=body.get("template_data") or {},
            tracking_id=body.get("tracking_id"),
        )

    def _accept_message(self, path: str, body: dict[str, Any], **fields: Any) -> Answer:
        recipient = fields.get("user_id") or fields.get("phone")
        message_id = secrets.token_hex(16)
        with self._lock:
            refused = self._refusal_locked(str(recipient), path)
            if refused is not None:
                return _error(refused, "refused for this recipient")
            self._sent.append(
                {
                    "path": path,
                    **fields,
                    "body": body,
                    "message_id": message_id,
                    "time": datetime.now(UTC),
                }
            )
        if path == ZNS_PATH:
            data = {"msg_id": message_id, "sent_time": str(int(time.time() * 1000))}
        else:
            data = {"message_id": message_id, "user_id": recipient}
        return 200, {"error": 0, "message": "Success", "data": data}, {}

    def _refusal_locked(self, recipient: str, path: str) -> int | None:
        failures = self._user_failures
        return failures.get((recipient, path), failures.get((recipient, None)))

    def _tag(self, path: str, body: dict[str, Any]) -> Answer:
        return self._change_tag(body, add=True)

    def _untag(self, path: str, body: dict[str, Any]) -> Answer:
        return self._change_tag(body, add=False)

    def _change_tag(self, body: dict[str, Any], *, add: bool) -> Answer:
        user_id, tag_name = body.get("user_id"), body.get("tag_name")
        if not user_id or not tag_name:
            return _error(_BAD_PARAMETER, "user_id and tag_name are required")
        with self._lock:
            refused = self._refusal_locked(str(user_id), TAG_PATH if add else UNTAG_PATH)
            if refused is not None:
                return _error(refused, "refused for this user")
            if add:
                self._tags.setdefault(str(tag_name), set()).add(str(user_id))
            else:
                self._tags.get(str(tag_name), set()).discard(str(user_id))
        return 200, {"error": 0, "message": "Success"}, {}

    def _list_tags(self, path: str, body: dict[str, Any]) -> Answer:
        with self._lock:
            names = sorted(self._tags)
        return 200, {"error": 0, "message": "Success", "data": names}, {}

    # -- Graph API (Mini App users) -------------------------------------------------------

    def _graph(self, path: str, handler: _Handler) -> Answer:
        headers = handler.headers
        token = headers.get("access_token") or ""
        with self._lock:
            user = self._user_tokens.get(token)
            if user is None:
                return _error(_GRAPH_SESSION_INVALID, "Session key invalid")
            if user.expires_at <= time.monotonic():
                return _error(_GRAPH_SESSION_INVALID, "Session key invalid: access token expired")
            if path == GRAPH_PHONE_PATH:
                return self._phone_locked(user, headers.get("code") or "",
                                          headers.get("secret_key") or "")
        expected = hmac.new(self.miniapp_secret_key.encode(), token.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("appsecret_proof") or "", expected):
            return _error(_GRAPH_SESSION_INVALID, "Invalid appsecret_proof")
        fields = parse_qs(urlsplit(handler.path).query).get("fields", ["id,name"])[0].split(",")
        answer: dict[str, Any] = {"id": user.zalo_id, "name": user.name or "",
                                  "picture": {"data": {"url": ""}}, "is_sensitive": False,
                                  "error": 0, "message": "Success"}
        if "user_id_by_oa" in fields and user.oa_user_id is not None:
            answer["user_id_by_oa"] = user.oa_user_id
        return 200, answer, {}

    def _phone_locked(self, user: _MiniAppUser, code: str, secret_key: str) -> Answer:
        if not hmac.compare_digest(secret_key, self.miniapp_secret_key):
            return _error(_GRAPH_SESSION_INVALID, "Invalid secret_key")
        phone_code = self._phone_codes.get(code)
        if phone_code is None or phone_code.zalo_id != user.zalo_id or \
                phone_code.expires_at <= time.monotonic():
            return _error(_GRAPH_SESSION_INVALID, "Invalid code")
        return 200, {"data": {"number": phone_code.phone}, "error": 0, "message": "Success"}, {}

    # -- tokens ---------------------------------------------------------------------------

    def _issue_pair(self) -> TokenPair:
        with self._lock:
            return self._issue_pair_locked()

    def _issue_pair_locked(self) -> TokenPair:
        pair = TokenPair(
            access_token="fake-at-" + secrets.token_urlsafe(24),
            refresh_token="fake-rt-" + secrets.token_urlsafe(24),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.expires_in),
        )
        self._valid_access.add(pair.access_token)
        self._valid_refresh.add(pair.refresh_token)
        return pair


def _form(raw: bytes) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(raw.decode()).items()}


def _get(body: dict[str, Any], outer: str, inner: str) -> Any:
    nested = body.get(outer)
    return nested.get(inner) if isinstance(nested, dict) else None


def _error(code: int, message: str) -> Answer:
    return 200, {"error": code, "message": message}, {}


def _oauth_error(code: int, name: str) -> dict[str, Any]:
    return {"error": code, "error_name": name, "error_description": name}


def _reply(
    handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str]
) -> None:
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client stopped waiting (a timeout test); nobody to answer


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Zalo OA/OAuth/ZNS API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--app-id", default="fake-app")
    parser.add_argument("--secret-key", default="fake-secret")
    args = parser.parse_args(argv)
    # Started in the background by a script, SIGINT may arrive ignored and SIGTERM would
    # kill the process without stopping the server cleanly; handle both.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    fake = FakeZalo(args.host, args.port, app_id=args.app_id, secret_key=args.secret_key)
    fake.start()
    tokens = fake.initial_tokens
    # Printed as settings so they can be pasted into a .env file; these tokens are fake.
    print(f"# FakeZalo serving at {fake.url} (Ctrl-C to stop)")
    for name, value in [
        ("LOYALTY_ZALO_API_URL", fake.url),
        ("LOYALTY_ZALO_OAUTH_URL", fake.url),
        ("LOYALTY_ZALO_BUSINESS_API_URL", fake.url),
        ("LOYALTY_ZALO_GRAPH_URL", fake.url),
        ("LOYALTY_ZALO_APP_ID", fake.app_id),
        ("LOYALTY_ZALO_SECRET_KEY", fake.secret_key),
        ("LOYALTY_ZALO_ACCESS_TOKEN", tokens.access_token),
        ("LOYALTY_ZALO_REFRESH_TOKEN", tokens.refresh_token),
    ]:
        print(f"{name}={value}")
    print(flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
