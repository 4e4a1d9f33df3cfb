"""The shared rate limiter, on fakeredis and on the run's own real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from loyalty.zalo import RedisRateLimiter


class FakeClock:
    """Wall time that moves only when the limiter sleeps, so windows are exact."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture(params=["fakeredis", "redis"])
def any_redis(request: pytest.FixtureRequest, fake_redis: fakeredis.FakeRedis) -> redis.Redis:
    if request.param == "fakeredis":
        return fake_redis
    return request.getfixturevalue("redis_client")


def grants(limiter: RedisRateLimiter, attempts: int) -> int:
    return sum(limiter.acquire(timeout=0) for _ in range(attempts))


def test_ten_per_second_allows_ten_in_a_window_not_fifty(
    any_redis: redis.Redis, key_prefix: str
) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(any_redis, key_prefix, 10, clock=clock, sleep=clock.sleep)

    assert grants(limiter, 50) == 10
    clock.now += 0.5  # same window
    assert grants(limiter, 50) == 0
    clock.now += 0.5  # next window
    assert grants(limiter, 50) == 10


def test_workers_share_one_limit(key_prefix: str) -> None:
    server = fakeredis.FakeServer()
    clock = FakeClock()
    first, second = (
        RedisRateLimiter(fakeredis.FakeRedis(server=server), key_prefix, 10, clock=clock)
        for _ in range(2)
    )

    assert grants(first, 6) + grants(second, 30) == 10


def test_acquire_waits_for_the_next_window(
    fake_redis: fakeredis.FakeRedis, key_prefix: str
) -> None:
    clock = FakeClock(start=1_800_000_000.2)
    limiter = RedisRateLimiter(fake_redis, key_prefix, 2, clock=clock, sleep=clock.sleep)
    assert grants(limiter, 2) == 2

    assert limiter.acquire(timeout=0.5) is False  # the window still has 0.8 s to go
    assert limiter.acquire(timeout=1.0) is True
    assert clock.now >= 1_800_000_001.0


def test_rates_below_one_per_second_use_a_longer_window(
    fake_redis: fakeredis.FakeRedis, key_prefix: str
) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(fake_redis, key_prefix, 0.5, clock=clock)

    assert (limiter.limit, limiter.window) == (1, 2.0)
    assert grants(limiter, 5) == 1
    clock.now += 1
    assert grants(limiter, 5) == 0
    clock.now += 1
    assert grants(limiter, 5) == 1


def test_rate_must_be_positive(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError):
        RedisRateLimiter(fake_redis, "k", 0)


def test_threads_on_real_redis_stay_within_the_limit_per_window(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    per_second = 10
    window_of_last_clock_read: dict[int, int] = {}
    granted_windows: list[int] = []
    lock = threading.Lock()
    stop_at = time.time() + 1.2

    def clock() -> float:
        # Remembers which 1-second window the limiter itself used, so each grant is counted
        # in its own window even if the thread is descheduled right after.
        now = time.time()
        window_of_last_clock_read[threading.get_ident()] = int(now)
        return now

    def hammer() -> None:
        # Each thread plays a worker process with its own limiter object.
        limiter = RedisRateLimiter(redis_client, key_prefix, per_second, clock=clock)
        while time.time() < stop_at:
            if limiter.acquire(timeout=0.05):
                with lock:
                    granted_windows.append(window_of_last_clock_read[threading.get_ident()])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    per_window = {window: granted_windows.count(window) for window in set(granted_windows)}
    assert per_window and max(per_window.values()) <= per_second
    # 1.2 s of hammering uses up at least one window (unthrottled it would be thousands).
    assert max(per_window.values()) == per_second
