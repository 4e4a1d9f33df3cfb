"""The baseline of ``bench.member_page``: one FastAPI route that reads the same header as
``GET /v1/me`` and answers a constant, served by uvicorn as ``loyalty serve`` serves the API:
``python -m uvicorn bench.bare_app:app``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header

app = FastAPI()


@app.get("/bare")
def bare(x_zalo_access_token: str | None = Header(None)) -> Any:
    # A sync route, as /v1/me is: both run in the same thread pool.
    return {"signed_in": x_zalo_access_token is not None}
