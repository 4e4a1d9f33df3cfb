"""Every log line the processes of this test session wrote (workers, beat, the API, Flower,
commands), scanned for phone numbers and for the secrets the tests configured.

Collected last (``after_all``, see tests/conftest.py): by then every other test has run and
its processes have written their logs, all of them in files under the session's tmp dirs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from loyalty.logs import mask_phones_in
from loyalty.settings import Settings
from tests.support.events import PHONES_SENT
from tests.support.privacy import PHONES, spellings
from tests.support.zalo_shop import ZALO_TOKEN_KEY
from tests.test_compose import FLOWER_AUTH

pytestmark = pytest.mark.after_all

DIGITS = re.compile(r"(?<![0-9])\+?[0-9]{8,15}(?![0-9])")
# What a secret of the tests looks like, whatever test made it up.
SECRET_SHAPES = {
    # The fake Zalo's OA tokens, member (Graph) tokens and phone codes.
    "a fake Zalo token": re.compile(r"fake-(?:at|rt|user|phone)-[A-Za-z0-9_-]+"),
    "a Fernet key": re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}="),
}
# Lines of worker processes about their work: Celery's task lines and ours per event.
WORKER_LOGGERS = ("celery.worker", "celery.app.trace", "loyalty.events")


def log_lines(root: Path) -> Iterator[tuple[Path, int, str]]:
    # Not redis.log: the embedded Redis server's own log is not ours and holds no data (and
    # its "commit=00000000" looks like a phone).
    for path in sorted(p for p in root.rglob("*.log") if p.name != "redis.log"):
        with path.open(encoding="utf-8", errors="replace") as log:
            for number, line in enumerate(log, 1):
                yield path, number, line.rstrip("\n")


def worker_line(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return str(json.loads(line).get("logger", "")).startswith(WORKER_LOGGERS)
    except ValueError:
        return False


def test_no_log_line_of_the_session_holds_a_phone_or_a_secret(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        settings: Settings) -> None:
    if not any("workers" in getattr(item, "fixturenames", ()) for item in request.session.items):
        pytest.skip("no test of this session sent events through the run's workers: "
                    "run it with the whole suite")
    phones = {spelling.lstrip("+") for phone in PHONES_SENT | set(PHONES)
              for spelling in spellings(phone)}
    secrets = {"the webhook secret": settings.webhook_secret.get_secret_value(),
               "the API token": settings.api_token.get_secret_value(),
               "the Zalo token key": ZALO_TOKEN_KEY,
               "the fake Zalo app secret": "fake-secret",
               "the Mini App secret of tests/test_member_page.py": "miniapp-secret",
               "the Flower password": FLOWER_AUTH[1]}

    findings: list[str] = []
    scanned = from_workers = events_handled = 0
    files: set[Path] = set()
    for path, number, line in log_lines(tmp_path_factory.getbasetemp()):
        scanned += 1
        files.add(path)
        if worker_line(line):
            from_workers += 1
            events_handled += '"message": "event handled"' in line
        where = f"{path}:{number}"
        if any(run.group(0).lstrip("+") in phones for run in DIGITS.finditer(line)):
            findings.append(f"{where}: a phone number of the tests' events: "
                            f"{mask_phones_in(line)[:300]}")
        elif mask_phones_in(line) != line:
            findings.append(f"{where}: a phone-like number: {mask_phones_in(line)[:300]}")
        findings += [f"{where}: {name}" for name, value in secrets.items() if value in line]
        findings += [f"{where}: {name}" for name, shape in SECRET_SHAPES.items()
                     if shape.search(line)]

    assert not findings, f"{len(findings)} log line(s) leak:\n" + "\n".join(findings[:30])
    # The scan saw real work: the suite's events carried phones, and the workers that
    # handled them logged it, in lines this scan read.
    assert PHONES_SENT
    assert events_handled >= 1 and from_workers >= 5, \
        f"only {from_workers} lines of workers ({events_handled} events) in {len(files)} files"
    print(f"scanned {scanned} lines in {len(files)} files, {from_workers} from workers, "
          f"{events_handled} handled events; {len(PHONES_SENT)} phones sent")
