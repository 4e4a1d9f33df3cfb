"""Fixtures for the Zalo client tests: a fake Zalo over real HTTP and the run's own Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests
from requests.adapters import HTTPAdapter

from devtools.fake_zalo import FakeZalo
from loyalty.zalo import TokenManager, ZaloClient
from tests.support.token_store import InMemoryTokenStore

# Short enough for fast tests, long enough that a local answer never times out by accident.
HTTP_TIMEOUT = 2.0
LOCK_TIMEOUT = 5.0


@pytest.fixture
def fake() -> Iterator[FakeZalo]:
    with FakeZalo() as server:
        yield server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test:zalo:{uuid.uuid4().hex}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


@pytest.fixture
def store(fake: FakeZalo) -> InMemoryTokenStore:
    return InMemoryTokenStore(fake.initial_tokens)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    # Room for the concurrency test's 20 threads without "pool is full" warnings.
    http = requests.Session()
    http.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=32))
    yield http
    http.close()


@pytest.fixture
def make_manager(
    fake: FakeZalo,
    store: InMemoryTokenStore,
    redis_client: redis.Redis,
    key_prefix: str,
    session: requests.Session,
) -> Callable[..., TokenManager]:
    def build(**overrides: Any) -> TokenManager:
        options: dict[str, Any] = {
            "store": store,
            "redis_client": redis_client,
            "app_id": fake.app_id,
            "secret_key": fake.secret_key,
            "oauth_url": fake.url,
            "session": session,
            "http_timeout": HTTP_TIMEOUT,
            "lock_timeout": LOCK_TIMEOUT,
            "lock_name": f"{key_prefix}:token-lock",
        }
        options.update(overrides)
        return TokenManager(**options)

    return build


@pytest.fixture
def tokens(make_manager: Callable[..., TokenManager]) -> TokenManager:
    return make_manager()


@pytest.fixture
def make_client(
    fake: FakeZalo, tokens: TokenManager, session: requests.Session
) -> Callable[..., ZaloClient]:
    def build(**overrides: Any) -> ZaloClient:
        options: dict[str, Any] = {
            "api_url": fake.url,
            "business_api_url": fake.url,
            "tokens": tokens,
            "timeout": HTTP_TIMEOUT,
            "session": session,
        }
        options.update(overrides)
        return ZaloClient(**options)

    return build


@pytest.fixture
def client(make_client: Callable[..., ZaloClient]) -> ZaloClient:
    return make_client()
