"""Real Celery worker processes for tests, started the way ops start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loyalty.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process see ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    values = {
        "LOYALTY_DATABASE_URL": settings.database_url,
        "LOYALTY_REDIS_URL": settings.redis_url,
        "LOYALTY_DATA_DIR": str(settings.data_dir),
        "LOYALTY_PROGRAM_FILE": str(settings.program_file) if settings.program_file else None,
        "LOYALTY_BROKER_VISIBILITY_TIMEOUT": str(settings.broker_visibility_timeout),
        "LOYALTY_BROKER_RESTORE_INTERVAL": str(settings.broker_restore_interval),
        "LOYALTY_WEBHOOK_SECRET": settings.webhook_secret.get_secret_value(),
        "LOYALTY_API_TOKEN": settings.api_token.get_secret_value(),
        "LOYALTY_ZALO_API_URL": settings.zalo_api_url,
        "LOYALTY_ZALO_OAUTH_URL": settings.zalo_oauth_url,
        "LOYALTY_ZALO_BUSINESS_API_URL": settings.zalo_business_api_url,
        "LOYALTY_ZALO_APP_ID": settings.zalo_app_id,
        "LOYALTY_ZALO_SECRET_KEY": settings.zalo_secret_key.get_secret_value(),
        "LOYALTY_ZALO_ACCESS_TOKEN": settings.zalo_access_token.get_secret_value(),
        "LOYALTY_ZALO_REFRESH_TOKEN": settings.zalo_refresh_token.get_secret_value(),
        "LOYALTY_ZALO_TIMEOUT_SECONDS": str(settings.zalo_timeout_seconds),
        "LOYALTY_ZALO_RATE_PER_SECOND": str(settings.zalo_rate_per_second),
    }
    env.update({k: v for k, v in values.items() if v})
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


class ChildProcess:
    """A command as a child process in its own process group, its output in a log file.

    The group matters: a Celery worker's pool children must get the same signal as it.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_in_log(self, text: str, timeout: float, *, after: int = 0) -> None:
        """Until ``text`` shows in the log (past byte ``after``); fails if the child exits."""
        def seen() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return text.encode() in self.log_path.read_bytes()[after:]

        wait_for(seen, timeout, f"{self.name} never logged {text!r}:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM to the whole group, without waiting."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class WorkerProcess(ChildProcess):
    """``celery -A workers worker`` serving every queue (or ``queues``) with ``settings``."""

    def __init__(self, settings: Settings, log_path: Path, *, name: str,
                 concurrency: int = 2, queues: str | None = None):
        argv = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=info",
                f"--concurrency={concurrency}", f"--hostname={name}@%h", "--without-gossip",
                "--without-mingle"] + (["-Q", queues] if queues else [])
        super().__init__(name, argv, settings_env(settings), log_path)
        self.settings = settings

    def start(self) -> WorkerProcess:
        start_of_log = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()
        self.wait_in_log("ready.", 60, after=start_of_log)
        return self


def wait_for(condition: Callable[[], bool], timeout: float, message: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)
