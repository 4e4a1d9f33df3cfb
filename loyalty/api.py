"""The HTTP API of SPEC §4 (``loyalty serve``): thin routes over the services."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import redis
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import FieldError
from loyalty.embedded_redis import redis_url
from loyalty.producer import InvalidEvents, enqueue_order_events
from loyalty.services.campaign_results import BadRange, campaign_results
from loyalty.services.events import keep_refused
from loyalty.services.members import UnknownMember, member_ledger, show_member

MAX_EVENTS_PER_REQUEST = 1000


def signature_of(body: bytes, secret: str) -> str:
    """The ``X-Loyalty-Signature`` a sender puts on ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _unprocessable(problems: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": problems})


def create_app(loyalty: Loyalty,
               enqueue: Callable[[list[dict[str, Any]]], int] = enqueue_order_events) -> FastAPI:
    app = FastAPI(title="Loyalty", version="1")
    from loyalty.metrics import mount_metrics
    mount_metrics(app, loyalty)
    settings = loyalty.settings
    zone = loyalty.zone

    def require_token(authorization: str | None) -> None:
        token = settings.api_token.get_secret_value()
        if not token or not authorization or not hmac.compare_digest(
                authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/order-events", status_code=202)
    async def order_events(request: Request) -> Any:
        body = await request.body()
        secret = settings.webhook_secret.get_secret_value()
        given = request.headers.get("x-loyalty-signature", "")
        if not secret or not hmac.compare_digest(given.encode(),
                                                 signature_of(body, secret).encode()):
            raise HTTPException(401, "missing or wrong X-Loyalty-Signature")
        try:
            document = json.loads(body)
        except ValueError as error:
            return _unprocessable([{"index": None, "errors": [
                {"field": "(body)", "message": f"not JSON: {error}"}]}])
        batch = document.get("events") if isinstance(document, dict) and "events" in document \
            else [document]
        if not isinstance(batch, list) or not 0 < len(batch) <= MAX_EVENTS_PER_REQUEST:
            return _unprocessable([{"index": None, "errors": [{
                "field": "events",
                "message": f"must be a list of 1 to {MAX_EVENTS_PER_REQUEST} events"}]}])
        try:
            accepted = enqueue(batch)
        except InvalidEvents as invalid:
            # Refused whole, and each bad event kept where ops can see and replay it.
            for problem in invalid.problems:
                keep_refused(loyalty, batch[problem["index"]],
                             [FieldError(**error) for error in problem["errors"]], "http")
            return _unprocessable(invalid.problems)
        return {"accepted": accepted}

    @app.get("/v1/members/{customer_id}")
    def member(customer_id: str, authorization: str | None = Header(None)) -> Any:
        require_token(authorization)
        try:
            return show_member(loyalty, customer_id).to_json(zone)
        except UnknownMember:
            raise HTTPException(404, f"no member {customer_id}") from None

    @app.get("/v1/members/{customer_id}/ledger")
    def ledger(customer_id: str, authorization: str | None = Header(None)) -> Any:
        require_token(authorization)
        try:
            lines = member_ledger(loyalty, customer_id)
        except UnknownMember:
            raise HTTPException(404, f"no member {customer_id}") from None
        return {"entries": [
            {"kind": line.kind, "points": line.points, "order_id": line.order_id,
             "balance_after": line.balance_after,
             "created_at": line.created_at.astimezone(zone).isoformat()} for line in lines]}

    @app.get("/v1/campaigns/crosssell/report")
    def crosssell_report(authorization: str | None = Header(None),
                         start: str | None = Query(None, alias="from"),
                         end: str | None = Query(None, alias="to")) -> Any:
        require_token(authorization)  # before the parameters: nothing is said without it
        days = {"from": start, "to": end}
        parsed: dict[str, date | None] = {}
        for name, value in days.items():
            try:
                parsed[name] = date.fromisoformat(value) if value else None
            except ValueError:
                return _unprocessable([{"field": name, "message": "must be a date YYYY-MM-DD, "
                                        f"not {value!r}"}])
        try:
            return campaign_results(loyalty, parsed["from"], parsed["to"]).to_json()
        except BadRange as error:
            return _unprocessable([{"field": "from", "message": str(error)}])

    from loyalty.console import mount_console
    mount_console(app)

    @app.get("/healthz")
    def healthz() -> Any:
        checks = {"database": _database_answers(loyalty), "redis": _redis_answers(loyalty)}
        status = 200 if all(checks.values()) else 503
        return JSONResponse(status_code=status,
                            content={k: "ok" if v else "down" for k, v in checks.items()})

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
