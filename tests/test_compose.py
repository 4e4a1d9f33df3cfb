"""docker-compose.yml, checked as a file and then run: every command it gives a service is
started here as a plain process with this test run's settings, and must answer.

There is no Docker engine on the test machine, so the containers themselves are not built;
what is proven is that each command, with the environment compose gives it, does its job.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import inspect

from devtools.processes import ROOT, ChildProcess, settings_env, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.queueing import QUEUES
from loyalty.settings import Settings
from loyalty.storage.tables import Base
from tests.support.tcp_proxy import free_port

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BIN = Path(sys.executable).parent
# The services built from our Dockerfile, each started below by ``stack``.
OURS = ("migrate", "worker-orders", "worker-messages", "beat", "api", "flower")
LONG_RUNNING = ("postgres", "redis", "worker-orders", "worker-messages", "beat", "api",
                "flower")
FLOWER_AUTH = ("ops", "flower-test-password")
SECRETS = ("test-webhook-secret", "test-api-token", FLOWER_AUTH[1])


def command(service: str) -> list[str]:
    value = SERVICES[service]["command"]
    # The exec form only: a shell string would hide what actually runs (and its signals).
    assert isinstance(value, list), f"{service}: use the exec form for command"
    return [str(part) for part in value]


def environment(service: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


# --- the file ----------------------------------------------------------------------------

def test_compose_names_the_production_services_and_runs_only_proven_commands() -> None:
    # Every service built from our image is started by the tests below with the command
    # written here, so a new service fails this test until it is run below as well.
    assert set(SERVICES) == {"postgres", "redis", *OURS}
    assert {name for name, service in SERVICES.items() if "build" in service} == set(OURS)
    proven = (["loyalty", "db", "upgrade"], ["loyalty", "serve"],
              ["celery", "-A", "workers", "worker"], ["celery", "-A", "workers", "beat"],
              ["celery", "-A", "workers", "flower"])
    for name in OURS:
        assert any(command(name)[:len(start)] == start for start in proven), name


def test_redis_keeps_the_queues_across_restarts_and_never_evicts_them() -> None:
    redis_command = " ".join(command("redis"))
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.endswith(":/var/lib/postgresql/data")
               for volume in SERVICES["postgres"]["volumes"])
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])


def test_exactly_one_beat() -> None:
    assert command("beat")[:4] == ["celery", "-A", "workers", "beat"]
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


def test_each_worker_serves_its_own_queues_and_together_all_of_them() -> None:
    def queues(service: str) -> set[str]:
        argv = command(service)
        assert argv[:4] == ["celery", "-A", "workers", "worker"]
        return set(argv[argv.index("-Q") + 1].split(","))

    assert queues("worker-orders") == {"order_events"}
    assert queues("worker-messages") == {"crosssell", "messages", "maintenance"}
    assert queues("worker-orders") | queues("worker-messages") == set(QUEUES)


def test_flower_takes_basic_auth_from_the_environment_with_no_default() -> None:
    assert "--basic-auth" not in " ".join(command("flower"))  # would show in `ps`
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}",
                        environment("flower")["FLOWER_BASIC_AUTH"])
    # Flower watches the broker only: no database password, no API secrets.
    assert not {k for k in environment("flower") if "SECRET" in k or "TOKEN" in k
                or k == "LOYALTY_DATABASE_URL"}


def test_no_secret_is_written_in_the_file() -> None:
    secret_words = re.compile(r"SECRET|TOKEN|PASSWORD|AUTH")
    for name in SERVICES:
        for key, value in environment(name).items():
            if secret_words.search(key):
                # Required (`:?`) from the operator, or empty (Zalo unconfigured) by default.
                assert re.fullmatch(r"\$\{[A-Z_]+:(\?[^}]+|-)\}", value), (name, key, value)
        url = environment(name).get("LOYALTY_DATABASE_URL")
        if url:
            assert re.search(r":\$\{POSTGRES_PASSWORD:\?[^}]+\}@", url), url


def test_long_running_services_restart_and_report_health() -> None:
    for name in LONG_RUNNING:
        assert SERVICES[name]["restart"] == "unless-stopped", name
        # Beat answers no ping; its compose entry says so, and the restart policy covers it.
        if name != "beat":
            assert SERVICES[name]["healthcheck"]["test"], name
    assert SERVICES["migrate"]["restart"] == "no"
    assert command("migrate") == ["loyalty", "db", "upgrade"]
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_everything_waits_for_the_migration() -> None:
    for name in OURS:
        if name == "migrate":
            continue
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name


def test_the_image_is_python_311_slim_and_runs_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines()
                    if line.strip() and not line.startswith(("#", " "))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    users = [rest[0].strip() for keyword, *rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    # The user is switched to after the install, so the code itself is not writable by it.
    keywords = [keyword for keyword, *_ in instructions]
    assert keywords.index("USER") > keywords.index("RUN")
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for keyword, *value in instructions:
        if keyword == "COPY":
            for source in value[0].split()[:-1]:
                assert (ROOT / source).exists() and source not in ignored, source
    assert {".env", ".git", ".venv"} <= ignored


# --- the commands, run -------------------------------------------------------------------

def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value replaced, in either ``--opt v`` or ``--opt=v`` form."""
    out = list(argv)
    for index, part in enumerate(out):
        if part == option:
            out[index + 1] = value
            return out
        if part.startswith(option + "="):
            out[index] = f"{option}={value}"
            return out
    raise AssertionError(f"{option} not in {argv}")


def service_env(settings: Settings, service: str) -> dict[str, str]:
    """This run's settings, narrowed to the variables compose gives ``service``."""
    given = environment(service)
    env = {k: v for k, v in settings_env(settings).items()
           if not k.startswith("LOYALTY_") or k in given or k == "LOYALTY_DATA_DIR"}
    # The image's PATH: `celery` and `python` in health checks are the installed ones.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOSTNAME"] = socket.gethostname()
    return env


def healthcheck(service: str, env: dict[str, str], ports: dict[str, str]) -> None:
    """Run the service's compose health check here, with the ports moved as for the service."""
    test = [str(part) for part in SERVICES[service]["healthcheck"]["test"]]
    kind, args = test[0], test[1:]
    if kind == "CMD-SHELL":
        # compose turns `$$` into `$`; the shell then expands it.
        argv = ["/bin/sh", "-c", args[0].replace("$$", "$")]
    else:
        assert kind == "CMD", test
        argv = args
    for old, new in ports.items():
        argv = [part.replace(old, new) for part in argv]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{service} health check failed: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def stack(migrated: Settings, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    """Every long-running service of ours, started with the command the file gives it."""
    logs = tmp_path_factory.mktemp("compose")
    ports = {"api": {"8000": str(free_port())}, "flower": {"5555": str(free_port())}}
    # Only what cannot be the same on a shared test machine moves: ports and file paths.
    overrides = {"beat": ("--schedule", str(logs / "celerybeat-schedule")),
                 "api": ("--port", ports["api"]["8000"]),
                 "flower": ("--port", ports["flower"]["5555"])}
    services: dict[str, ChildProcess] = {}
    envs: dict[str, dict[str, str]] = {}
    for name in OURS:
        if name == "migrate":
            continue  # one-shot: test_migrate_command_creates_the_schema… runs it
        argv = command(name)
        if name in overrides:
            argv = _with_option(argv, *overrides[name])
        envs[name] = service_env(migrated, name)
        if name == "flower":
            envs[name]["FLOWER_BASIC_AUTH"] = ":".join(FLOWER_AUTH)
        argv = [str(BIN / argv[0]), *argv[1:]]
        services[name] = ChildProcess(name, argv, envs[name], logs / f"{name}.log")
    try:
        for service in services.values():
            service.start()
        yield {"services": services, "envs": envs, "ports": ports, "logs": logs,
               "api": f"http://127.0.0.1:{ports['api']['8000']}",
               "flower": f"http://127.0.0.1:{ports['flower']['5555']}"}
    finally:
        for service in services.values():
            service.terminate()
        for service in services.values():
            service.stop()


def test_migrate_command_creates_the_schema_and_can_run_again(
        empty_database: Settings) -> None:
    argv = command("migrate")
    for _ in range(2):  # compose runs it on every `up`: the second run must be a no-op
        done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT,
                              env=service_env(empty_database, "migrate"),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "database schema is up to date" in done.stdout
    engine = Loyalty.from_settings(empty_database).engine
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {table.name for table in Base.metadata.sorted_tables} | {"alembic_version"} \
        <= tables


def nodename(service: str) -> str:
    hostname = next(part.split("=", 1)[1] for part in command(service)
                    if part.startswith("--hostname="))
    return hostname.replace("%h", socket.gethostname())


@pytest.mark.workers
def test_worker_commands_start_on_their_queues_and_answer_their_health_check(
        stack: dict[str, Any]) -> None:
    for name in ("worker-orders", "worker-messages"):
        service = stack["services"][name]
        service.wait_in_log(f"{nodename(name)} ready.", 90)
        argv = command(name)
        served = set(argv[argv.index("-Q") + 1].split(","))
        banner = {queue for queue in QUEUES if f".> {queue} " in service.log()}
        assert banner == served, name
        healthcheck(name, stack["envs"][name], {})


@pytest.mark.workers
def test_beat_command_starts_and_keeps_its_schedule_where_it_was_told(
        stack: dict[str, Any]) -> None:
    stack["services"]["beat"].wait_in_log("beat: Starting...", 60)
    # In the image only /var/lib/loyalty is writable: beat must honour --schedule.
    wait_for(lambda: any(stack["logs"].glob("celerybeat-schedule*")), 10,
             "beat wrote no schedule file at the --schedule path")


def _get(url: str, **kwargs: Any) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10, **kwargs)
    except httpx.TransportError:
        return None  # not listening yet


def _answer(url: str, timeout: float, **kwargs: Any) -> httpx.Response:
    answers: list[httpx.Response] = []

    def answered() -> bool:
        answer = _get(url, **kwargs)
        if answer is not None:
            answers.append(answer)
        return answer is not None

    wait_for(answered, timeout, f"nothing answered at {url}", interval=0.3)
    return answers[-1]


@pytest.mark.workers
def test_api_command_serves_healthz(stack: dict[str, Any]) -> None:
    answer = _answer(f"{stack['api']}/healthz", 60)
    assert (answer.status_code, answer.json()) == (200, {"database": "ok", "redis": "ok"})
    healthcheck("api", stack["envs"]["api"], stack["ports"]["api"])
    # What compose serves shows no API docs, and its metrics only with the shop-wide token.
    for page in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(stack["api"] + page, timeout=10).status_code == 404, page
    assert httpx.get(f"{stack['api']}/metrics", timeout=10).status_code == 401
    scraped = httpx.get(f"{stack['api']}/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {SECRETS[1]}"})
    assert scraped.status_code == 200 and "loyalty_stats_up 1.0" in scraped.text


@pytest.mark.workers
def test_flower_command_lists_our_workers_behind_basic_auth(stack: dict[str, Any]) -> None:
    for name in ("worker-orders", "worker-messages"):
        stack["services"][name].wait_in_log(f"{nodename(name)} ready.", 90)
    url = f"{stack['flower']}/api/workers"
    assert _answer(url, 60).status_code == 401
    assert _answer(url, 10, auth=(FLOWER_AUTH[0], "wrong")).status_code == 401
    expected = {nodename("worker-orders"), nodename("worker-messages")}
    listed: set[str] = set()

    def lists_ours() -> bool:
        # refresh=1: ask the workers now instead of waiting for their next heartbeat.
        answer = httpx.get(url, params={"refresh": 1}, auth=FLOWER_AUTH, timeout=30)
        if answer.status_code == 200:  # 503 while an inspect call times out: ask again
            listed.update(answer.json())
        return expected <= listed

    wait_for(lists_ours, 60, f"flower listed {listed}, not {expected}", interval=1)
    healthcheck("flower", stack["envs"]["flower"], stack["ports"]["flower"])


@pytest.mark.workers
def test_no_secret_reaches_any_log(stack: dict[str, Any]) -> None:
    # Last in the module: by now every service has started, served and been probed.
    stack["services"]["beat"].wait_in_log("beat: Starting...", 60)
    for service in stack["services"].values():
        text = service.log()
        assert text, service.name
        for secret in SECRETS:
            assert secret not in text, (service.name, secret)
