"""Child processes (Celery workers, the API, compose commands) as ops start them, in their
own process groups, with their output in a log file; and waiting on them."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from pydantic import SecretStr

from loyalty.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process see ``settings``.

    Built from the model's fields rather than a fixed list, so a setting added later reaches
    the children without touching this file.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOYALTY_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"LOYALTY_{name.upper()}"] = text
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, message: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)


def _die_with_parent() -> None:
    # If the parent is killed (SIGKILL skips every cleanup), its direct children get SIGTERM
    # from the kernel instead of running on; a Celery worker then stops its own pool.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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

    def start(self, ready: Callable[[], bool] | None = None,
              timeout: float = 60) -> ChildProcess:
        """Start, and when ``ready`` is given wait until it holds (fails if the child exits)."""
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
        if ready is not None:
            wait_for(lambda: self._alive() and ready(), timeout,
                     f"{self.name} did not start:\n{self.log()[-3000:]}")
        return self

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_in_log(self, text: str, timeout: float, *, after: int = 0) -> None:
        """Until ``text`` shows in the log (past byte ``after``); fails if the child exits."""
        wait_for(lambda: self._alive() and text.encode() in self.log_path.read_bytes()[after:],
                 timeout, f"{self.name} never logged {text!r}:\n{self.log()[-3000:]}")

    def pids(self) -> list[int]:
        """Every live process of this child's group (a worker and its pool processes)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [pid for pid, group in process_groups() if group == self.process.pid]

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM to the whole group, without waiting."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        # The whole group, even when its leader is gone: a dead worker can leave pool
        # processes behind.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def worker_argv(*, name: str, concurrency: int = 2, queues: str | None = None,
                loglevel: str = "info", app: str = "workers") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, "worker", f"--loglevel={loglevel}",
            f"--concurrency={concurrency}", f"--hostname={name}@%h", "--without-gossip",
            "--without-mingle"] + (["-Q", queues] if queues else [])


class WorkerProcess(ChildProcess):
    """``celery -A workers worker`` serving every queue (or ``queues``) with ``settings``."""

    def __init__(self, settings: Settings, log_path: Path, *, name: str,
                 concurrency: int = 2, queues: str | None = None):
        super().__init__(name, worker_argv(name=name, concurrency=concurrency, queues=queues),
                         settings_env(settings), log_path)
        self.settings = settings

    def start(self, ready: Callable[[], bool] | None = None,
              timeout: float = 60) -> WorkerProcess:
        start_of_log = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start(ready, timeout)
        self.wait_in_log("ready.", timeout, after=start_of_log)
        return self


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2:].split()


def process_groups() -> list[tuple[int, int]]:
    """(pid, process group) of every live process (Linux /proc)."""
    return [(int(entry), int(fields[2])) for entry in os.listdir("/proc")
            if entry.isdigit() and (fields := _stat_fields(entry)) is not None]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0 once it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0.0
