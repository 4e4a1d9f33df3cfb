"""The marketer's console (``/console/campaigns``): a static page and its script, which ask
for the shop-wide API token and draw ``GET /v1/campaigns/crosssell/report``.

The page itself holds no data, so it is served to anyone; every figure comes from the JSON
route, which needs the token. The token is typed into the page and kept in the tab's
``sessionStorage``: never in a URL, where it would reach access logs and browser history.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import Response

# Only this server's own files; no inline script or style, no framing, no referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSETS = {
    "/console/campaigns": ("campaigns.html", "text/html; charset=utf-8"),
    "/console/campaigns.js": ("campaigns.js", "text/javascript; charset=utf-8"),
    "/console/campaigns.css": ("campaigns.css", "text/css; charset=utf-8"),
}


def _serve(name: str, media_type: str) -> Callable[[], Response]:
    body = files(__package__).joinpath(name).read_bytes()

    def asset() -> Response:
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    return asset


def mount_console(app: FastAPI) -> None:
    for path, (name, media_type) in ASSETS.items():
        app.add_api_route(path, _serve(name, media_type), methods=["GET"],
                          include_in_schema=False)
