"""A shop that talks to the fake Zalo: its settings, its worker processes and its
``Loyalty``, for the test modules that send through real workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from devtools.fake_zalo import FakeZalo
from devtools.processes import WorkerProcess
from loyalty.bootstrap import Loyalty
from loyalty.settings import Settings
from loyalty.storage.zalo_tokens import DbTokenStore


def zalo_settings(settings: Settings, fake: FakeZalo, program: Path,
                  timeout: float) -> Settings:
    """``settings`` with the fake's hosts and credentials and ``program``."""
    pair = fake.initial_tokens
    return settings.model_copy(update={
        "program_file": program,
        "zalo_app_id": fake.app_id, "zalo_secret_key": SecretStr(fake.secret_key),
        "zalo_access_token": SecretStr(pair.access_token),
        "zalo_refresh_token": SecretStr(pair.refresh_token),
        "zalo_api_url": fake.url, "zalo_oauth_url": fake.url,
        "zalo_business_api_url": fake.url, "zalo_timeout_seconds": timeout})


def swap_workers(settings: Settings, workers: list[WorkerProcess], logs: Path,
                 prefix: str) -> Iterator[list[WorkerProcess]]:
    """Two workers on ``settings`` while the run's plain ``workers`` step aside (a
    module-scoped fixture's body)."""
    for worker in workers:
        worker.stop()
    started = [WorkerProcess(settings, logs / f"{prefix}{i}.log", name=f"{prefix}{i}").start()
               for i in range(2)]
    yield started
    for worker in started:
        worker.stop()
    for worker in workers:
        worker.start()


def open_shop(settings: Settings, fake: FakeZalo) -> Iterator[Loyalty]:
    """The shop on ``settings``, its failures forgotten and its tokens fresh (a fixture's
    body)."""
    fake.clear_failures()
    shop = Loyalty.from_settings(settings)
    DbTokenStore(shop.sessions).save(fake.issue_tokens())
    yield shop
    shop.engine.dispose()
