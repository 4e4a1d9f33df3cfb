"""A shop that talks to the local fake Zalo: its settings, its worker processes and its
``Loyalty``, for the test modules that send through real workers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr

from devtools.fake_zalo import FakeZalo
from devtools.processes import WorkerProcess
from loyalty.bootstrap import Loyalty
from loyalty.settings import Settings
from loyalty.storage.zalo_tokens import DbTokenStore

# The key the tests that configure (the fake) Zalo store its token pair with.
ZALO_TOKEN_KEY = Fernet.generate_key().decode()


def zalo_settings(base: Settings, fake: FakeZalo, **changes: Any) -> Settings:
    """``base`` with the OA credentials of ``fake`` and every Zalo host pointed at it."""
    pair = fake.initial_tokens
    return base.model_copy(update={
        "zalo_app_id": fake.app_id, "zalo_secret_key": SecretStr(fake.secret_key),
        "zalo_access_token": SecretStr(pair.access_token),
        "zalo_refresh_token": SecretStr(pair.refresh_token),
        "zalo_api_url": fake.url, "zalo_oauth_url": fake.url,
        "zalo_business_api_url": fake.url, "zalo_timeout_seconds": 2.0,
        "zalo_token_keys": SecretStr(ZALO_TOKEN_KEY), **changes})


@contextmanager
def workers_with(settings: Settings, stepping_aside: list[WorkerProcess], logs: Path,
                 prefix: str) -> Iterator[list[WorkerProcess]]:
    """Two workers with ``settings``; the run's plain workers step aside meanwhile."""
    for worker in stepping_aside:
        worker.stop()
    started = [WorkerProcess(settings, logs / f"{prefix}{i}.log", name=f"{prefix}{i}").start()
               for i in range(2)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
        for worker in stepping_aside:
            worker.start()


def open_shop(settings: Settings, fake: FakeZalo) -> Iterator[Loyalty]:
    """The shop on ``settings``, its failures forgotten and its tokens fresh (a fixture's
    body)."""
    fake.clear_failures()
    shop = Loyalty.from_settings(settings)
    DbTokenStore(shop.sessions, shop.settings.token_keys()).save(fake.issue_tokens())
    yield shop
    shop.engine.dispose()
