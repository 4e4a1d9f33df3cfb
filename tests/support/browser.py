"""The member's page in a real browser: Debian's Chromium driven by Playwright, and the page
built by the Makefile (``make miniapp`` / ``make miniapp-release``) for an API at a given URL.

Fixtures (registered in tests/conftest.py):

- ``chromium``: one headless Chromium for the session (/usr/bin/chromium; Playwright's own
  browser download cannot work here and is never used).
- ``miniapp_builds``: ``.dev(api_url)`` and ``.release(api_url)`` build the page once per URL
  and session, into a temporary folder, and return that folder.
- ``browser_page``: a fresh phone-sized page in Vietnam's zone for each test
  (``phone_page(browser, timezone_id)`` for another zone).

``serve_build(folder)`` serves a build at ``/miniapp/`` on a local port, as
``loyalty serve --miniapp`` does, from a different origin than the API.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LOYALTY_TEST_CHROMIUM", "/usr/bin/chromium"))
# As root, without a GPU, on a machine whose network reaches nothing but its own loopback:
# no sandbox, and none of Chromium's calls home (they would be refused, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGE_PATH = "/miniapp/"
# A phone's screen; the Mini App is laid out for one.
VIEWPORT = {"width": 390, "height": 844}


class MiniappBuilds:
    """Builds of the page, made with the Makefile's own targets, one per API URL and kind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()

    def dev(self, api_url: str) -> Path:
        """The development build: it takes the token from the page's ``?access_token=``."""
        return self._build("miniapp", "MINIAPP_OUT", api_url)

    def release(self, api_url: str) -> Path:
        """The production build, as shipped to Zalo."""
        return self._build("miniapp-release", "MINIAPP_RELEASE_OUT", api_url)

    def _build(self, target: str, out_variable: str, api_url: str) -> Path:
        with self._lock:
            key = (target, api_url)
            if key not in self._built:
                out = self.root / f"{target}-{len(self._built)}"
                _require_node()
                done = subprocess.run(
                    ["make", "--no-print-directory", "-C", str(REPO), target,
                     f"{out_variable}={out}", f"VITE_LOYALTY_API={api_url}"],
                    capture_output=True, text=True, timeout=600, check=False)
                if done.returncode != 0:
                    pytest.fail(f"make {target} failed:\n{done.stdout}\n{done.stderr}",
                                pytrace=False)
                self._built[key] = out
            return self._built[key]


def _require_node() -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("the member's page needs Node.js (20 or later) and npm to build: "
                    "install them (e.g. apt-get install -y nodejs npm)", pytrace=False)


def launch_chromium(playwright: Any) -> Browser:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser tests drive Debian's package, "
                    "install it with `apt-get install -y chromium`", pytrace=False)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def miniapp_builds(tmp_path_factory: pytest.TempPathFactory) -> MiniappBuilds:
    return MiniappBuilds(tmp_path_factory.mktemp("miniapp-builds"))


@contextmanager
def phone_page(browser: Browser, timezone_id: str = "Asia/Ho_Chi_Minh") -> Iterator[Page]:
    """A new page on a phone-sized screen, in its own context; uncaught page errors fail."""
    with new_page(browser, viewport=VIEWPORT, device_scale_factor=2, locale="vi-VN",
                  timezone_id=timezone_id) as page:
        yield page


@contextmanager
def new_page(browser: Browser, **context_options: Any) -> Iterator[Page]:
    """A new page in its own browser context; uncaught page errors fail."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Page]:
    with phone_page(chromium) as page:
        yield page


class _BuildHandler(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        # Only the sub-path exists, so a page that asked for /assets/... (an absolute base)
        # would find nothing.
        inside = path.split("?", 1)[0].split("#", 1)[0]
        if not inside.startswith(PAGE_PATH):
            return str(Path(self.directory) / "__outside_the_sub_path__")
        return super().translate_path("/" + inside[len(PAGE_PATH):])

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_build(folder: Path) -> Iterator[str]:
    """Serve a build at ``/miniapp/`` on a free local port; yields the page's URL."""
    handler = functools.partial(_BuildHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="miniapp-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PAGE_PATH}"
    finally:
        server.shutdown()
        server.server_close()
