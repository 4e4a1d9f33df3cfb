"""One benchmark run: its own PostgreSQL databases and Redis database number, cleaned up after.

Nothing outside what this run created is touched: databases are created under a name with
the run's id and only those are dropped; the Redis database number is claimed only when it
is empty, and only emptied again while it still carries this run's marker.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
import redis

from bench.report import Result
from devtools.redis_db import MARKER, claim_redis_db, release_redis_db
from loyalty.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_HOST_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
WEBHOOK_SECRET = "bench-webhook-secret"


class BenchError(RuntimeError):
    """The run cannot go on (a child did not start, work did not finish in time)."""


def env_int(name: str, default: int) -> int:
    """A size from the environment (``BENCH_EVENTS=…``), so that ``make bench`` can be scaled."""
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Benchmark:
    """One entry of the registry: a module exposes one of these as ``BENCHMARK``."""

    name: str
    summary: str
    run: Callable[[Context], Result]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


# Deletes everything but the claim marker, so the number stays ours between phases.
_EMPTY_BUT_MARKER = """
for _, key in ipairs(redis.call('KEYS', '*')) do
  if key ~= KEYS[1] then redis.call('DEL', key) end
end
return redis.call('GET', KEYS[1])
"""


class Context:
    """What every benchmark gets: parsed arguments, a scratch directory, and the resources of
    this run (databases, Redis number) that are released when the run ends, even on error."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run_id = uuid.uuid4().hex[:10]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"loyalty-bench-{self.run_id}-"))
        self.results: dict[str, Result] = {}
        self._stack = ExitStack()
        self._databases: list[str] = []
        self._redis_number: int | None = None
        self.failed = False

    def __enter__(self) -> Context:
        self._stack.callback(self._remove_workdir)
        try:
            self._redis_number = claim_redis_db(REDIS_HOST_URL, self.run_id)
        except BaseException:
            self.failed = True
            self._stack.close()
            raise
        self._stack.callback(self._release_redis)
        self._stack.callback(self._drop_databases)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.failed = kind is not None
        self._stack.close()

    # --- Redis -----------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        assert self._redis_number is not None, "use the context inside `with`"
        return f"{REDIS_HOST_URL}/{self._redis_number}"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def reset_redis(self) -> None:
        """Empty this run's Redis database between phases (queues, counters, kombu keys)."""
        with self.redis() as client:
            marker = client.eval(_EMPTY_BUT_MARKER, 1, MARKER)
        if marker != self.run_id.encode():
            raise BenchError(f"Redis database {self._redis_number} is no longer this run's")

    def _release_redis(self) -> None:
        assert self._redis_number is not None
        release_redis_db(REDIS_HOST_URL, self._redis_number, self.run_id)

    # --- PostgreSQL ------------------------------------------------------------------
    def new_database(self, label: str, *, migrate: bool = True) -> str:
        """A fresh database of this run; returns its SQLAlchemy URL."""
        name = f"loyalty_bench_{self.run_id}_{label}"
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        url = f"postgresql+psycopg://{POSTGRES_URL.split('://', 1)[1]}/{name}"
        if migrate:
            # Imported here: worker processes of the baseline import this module too, and
            # need nothing of Alembic.
            from loyalty.storage.migrate import upgrade

            upgrade(url)
        return url

    @staticmethod
    def conninfo(url: str) -> str:
        """The plain libpq URL of a SQLAlchemy one, for psycopg."""
        return url.replace("postgresql+psycopg://", "postgresql://", 1)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        if name not in self._databases:
            raise BenchError(f"refusing to drop {name}: not created by this run")
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._databases.remove(name)

    def _drop_databases(self) -> None:
        for name in list(self._databases):
            self.drop_database(f"{POSTGRES_URL}/{name}")

    # --- settings for the processes under test ---------------------------------------
    def settings(self, database_url: str | None) -> Settings:
        return Settings(database_url=database_url, redis_url=self.redis_url,
                        data_dir=self.workdir / "data", webhook_secret=WEBHOOK_SECRET,
                        api_token="bench-api-token")

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _remove_workdir(self) -> None:
        if self.failed or self.args.keep_logs:
            print(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    with psycopg.connect(f"{POSTGRES_URL}/postgres") as admin:
        row = admin.execute("SHOW server_version").fetchone()
        postgres = row[0] if row else "?"
    with redis.Redis.from_url(REDIS_HOST_URL) as client:
        redis_version = client.info("server")["redis_version"]
    import celery

    return {"cpus": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1),
            "cpu_model": _cpu_model(), "python": platform.python_version(),
            "postgresql": postgres, "redis": redis_version, "celery": celery.__version__,
            "load_average": os.getloadavg()}


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"
