"""The HTTP API of SPEC §4 (``loyalty serve``): thin routes over the services."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import FieldError, is_customer_id
from loyalty.embedded_redis import redis_url
from loyalty.producer import InvalidEvents, QueueUnavailable, enqueue_order_events
from loyalty.services.events import keep_refused
from loyalty.services.members import (
    LedgerLine,
    UnknownMember,
    member_ledger,
    show_member,
    show_signed_in,
    signed_in_ledger,
)
from loyalty.services.signin import NotSignedIn, SignInUnavailable, sign_in
from loyalty.services.zalo_links import PhoneRefused, link_phone
from loyalty.zalo.graph import GraphUnavailable, ZaloIdentity

MAX_EVENTS_PER_REQUEST = 1000
# A batch nests four objects and arrays ({"events": [{"customer": {}}]}). Far deeper is no
# event, and near Python's recursion limit (about 1000) reading or keeping it would fail.
MAX_DEPTH = 32
# What a sender is told to wait before sending again while the queue or database is down.
RETRY_AFTER_SECONDS = 10
MEMBERS = b"/v1/members/"
# The database is unreachable, not wrong: worth the sender trying again.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
# The member's page routes: signed in with Zalo, and open to the Mini App's origins.
MEMBER_PAGE_PREFIX = "/v1/me"


def signature_of(body: bytes, secret: str) -> str:
    """The ``X-Loyalty-Signature`` a sender puts on ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _unprocessable(problems: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": problems})


def _body_problem(field: str, message: str) -> JSONResponse:
    return _unprocessable([{"index": None, "errors": [{"field": field, "message": message}]}])


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail},
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    too_large = HTTPException(413, f"the body is over {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether a parsed JSON document nests more than ``limit`` objects and arrays (read
    level by level, not recursively)."""
    level = [document]
    for _ in range(limit + 1):
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers:
            return False
        level = [child for node in containers
                 for child in (node.values() if isinstance(node, dict) else node)]
    return True


def _member_path(scope: Scope) -> tuple[str, bool] | None:
    """(customer id, whether the ledger is asked for) of a ``/v1/members/...`` path.

    Read from the raw path, each segment percent-decoded here: Starlette decodes ``%2F``
    before routing, so routing on the decoded path would take the member ``a/ledger`` for
    the ledger of ``a``. Ids are the shop's opaque strings and must round-trip exactly.
    """
    # raw_path is optional in ASGI; without it, ids holding "/" cannot be told apart.
    raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
    root = scope.get("root_path", "").encode()
    if root and raw.startswith(root):
        raw = raw[len(root):]
    if not raw.startswith(MEMBERS):
        return None
    match raw[len(MEMBERS):].split(b"/"):
        case [segment]:
            ledger = False
        case [segment, b"ledger"]:
            ledger = True
        case _:
            return None
    try:
        return unquote_to_bytes(segment).decode("utf-8"), ledger
    except UnicodeDecodeError:
        return None


class PhoneCode(BaseModel):
    token: str = Field(min_length=1, max_length=2048,
                       description="the token zmp-sdk getPhoneNumber gave the page")


class MemberPageCORS:
    """CORS for the member's page routes only, preflight included: the shop-wide routes stay
    closed to browsers whatever origin asks."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self._app = app
        self._cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"],
                                    allow_headers=["X-Zalo-Access-Token", "Content-Type"],
                                    max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == MEMBER_PAGE_PREFIX or
                                        path.startswith(MEMBER_PAGE_PREFIX + "/")):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)


class MiniAppFiles(StaticFiles):
    """A built member's page. A development build reads its token from the page's URL, which
    must then not travel on as a Referer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def _ledger_json(lines: list[LedgerLine], zone: Any) -> dict[str, Any]:
    return {"entries": [
        {"kind": line.kind, "points": line.points, "order_id": line.order_id,
         "balance_after": line.balance_after,
         "created_at": line.created_at.astimezone(zone).isoformat()} for line in lines]}


def create_app(loyalty: Loyalty,
               enqueue: Callable[[list[dict[str, Any]]], int] = enqueue_order_events,
               *, miniapp: Path | None = None) -> FastAPI:
    settings = loyalty.settings
    docs = settings.api_docs
    app = FastAPI(title="Loyalty", version="1", docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    zone = loyalty.zone
    app.add_middleware(MemberPageCORS, origins=settings.miniapp_origin_list)

    def require_token(authorization: str | None = Header(None)) -> None:
        token = settings.api_token.get_secret_value()
        if not token or not authorization or not hmac.compare_digest(
                authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    from loyalty.metrics import mount_metrics
    mount_metrics(app, loyalty, dependencies=[Depends(require_token)])

    def keep_all_refused(batch: list[Any], problems: list[dict[str, Any]]) -> None:
        for problem in problems:
            keep_refused(loyalty, batch[problem["index"]],
                         [FieldError(**error) for error in problem["errors"]], "http")

    @app.post("/v1/order-events", status_code=202)
    async def order_events(request: Request) -> Any:
        # The size first: the signature can only be checked on the whole body.
        body = await _read_body(request, settings.max_body_bytes)
        secret = settings.webhook_secret.get_secret_value()
        given = request.headers.get("x-loyalty-signature", "")
        if not secret or not hmac.compare_digest(given.encode(),
                                                 signature_of(body, secret).encode()):
            raise HTTPException(401, "missing or wrong X-Loyalty-Signature")
        too_deep = f"nested deeper than {MAX_DEPTH} levels"
        try:
            document = json.loads(body)
        except ValueError as error:
            return _body_problem("(body)", f"not JSON: {error}")
        except RecursionError:
            return _body_problem("(body)", too_deep)
        if _deeper_than(document, MAX_DEPTH):
            return _body_problem("(body)", too_deep)
        batch = document.get("events") if isinstance(document, dict) and "events" in document \
            else [document]
        if not isinstance(batch, list) or not 0 < len(batch) <= MAX_EVENTS_PER_REQUEST:
            return _body_problem("events",
                                 f"must be a list of 1 to {MAX_EVENTS_PER_REQUEST} events")
        # Publishing and storing block: in the thread pool, so that a slow broker or
        # database holds up this request only, not every request of the process.
        try:
            accepted = await run_in_threadpool(enqueue, batch)
        except InvalidEvents as invalid:
            # Refused whole, and each bad event kept where ops can see and replay it.
            try:
                await run_in_threadpool(keep_all_refused, batch, invalid.problems)
            except DATABASE_DOWN:
                return _unavailable("the database is not reachable: nothing was queued, "
                                    "send the request again later")
            return _unprocessable(invalid.problems)
        except QueueUnavailable:
            # Events before the failing one may be queued: sending the whole request again
            # is safe, as the same event_id counts once.
            return _unavailable("the queue is not reachable: the events are not accepted, "
                                "send the request again later")
        return {"accepted": accepted}

    @app.get("/v1/members/{path:path}", summary="Member view or ledger")
    def member_routes(request: Request, authorization: str | None = Header(None)) -> Any:
        """``/v1/members/{customer_id}`` and ``/v1/members/{customer_id}/ledger``, with the
        id percent-encoded (``/`` as ``%2F``)."""
        require_token(authorization)
        found = _member_path(request.scope)
        if found is None or not is_customer_id(found[0]):
            # No customer can have such an id (and no database is asked about it).
            raise HTTPException(404, "no such member")
        customer_id, ledger = found
        try:
            if not ledger:
                return show_member(loyalty, customer_id).to_json(zone)
            lines = member_ledger(loyalty, customer_id)
        except UnknownMember:
            raise HTTPException(404, f"no member {customer_id}") from None
        return _ledger_json(lines, zone)

    def signed_in(access_token: str | None) -> ZaloIdentity:
        try:
            return sign_in(loyalty, access_token)
        except NotSignedIn as error:
            raise HTTPException(401, str(error)) from None
        except SignInUnavailable as error:
            raise HTTPException(503, str(error)) from None

    # The member's page: who is asking comes from the verified token alone; no route takes a
    # customer id.
    @app.get(MEMBER_PAGE_PREFIX)
    def me(x_zalo_access_token: str | None = Header(None)) -> Any:
        return show_signed_in(loyalty, signed_in(x_zalo_access_token)).to_json(zone)

    @app.get(MEMBER_PAGE_PREFIX + "/ledger")
    def my_ledger(x_zalo_access_token: str | None = Header(None)) -> Any:
        return _ledger_json(signed_in_ledger(loyalty, signed_in(x_zalo_access_token)), zone)

    @app.post(MEMBER_PAGE_PREFIX + "/phone")
    def my_phone(code: PhoneCode, x_zalo_access_token: str | None = Header(None)) -> Any:
        identity = signed_in(x_zalo_access_token)
        assert x_zalo_access_token is not None  # signed_in refused it otherwise
        try:
            link_phone(loyalty, identity, x_zalo_access_token, code.token)
        except PhoneRefused as error:
            raise HTTPException(422, str(error)) from None
        except GraphUnavailable as error:
            raise HTTPException(503, f"Zalo cannot read the phone code now: {error}") from None
        return show_signed_in(loyalty, identity).to_json(zone)

    @app.get("/healthz")
    def healthz() -> Any:
        checks = {"database": _database_answers(loyalty), "redis": _redis_answers(loyalty)}
        status = 200 if all(checks.values()) else 503
        return JSONResponse(status_code=status,
                            content={k: "ok" if v else "down" for k, v in checks.items()})

    if miniapp is not None:
        app.mount("/miniapp", MiniAppFiles(directory=miniapp, html=True), name="miniapp")
    return app


def _database_answers(loyalty: Loyalty) -> bool:
    try:
        with loyalty.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _redis_answers(loyalty: Loyalty) -> bool:
    try:
        client = redis.Redis.from_url(redis_url(loyalty.settings), socket_timeout=1,
                                      socket_connect_timeout=1)
        with client:
            return bool(client.ping())
    except Exception:
        return False
