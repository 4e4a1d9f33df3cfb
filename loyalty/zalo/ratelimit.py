"""A rate limit shared by every worker process, kept in Redis.

Zalo's limit (about 4,000 requests a minute) is per app, not per worker, so the count has
to live where all workers see it. A fixed window counter (INCR + PEXPIRE in one MULTI) is
enough: at worst a burst of two windows' worth straddles a boundary, well within Zalo's
per-minute limit, and it needs no Lua, so it also runs on fakeredis.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Protocol

import redis


class RateLimiter(Protocol):
    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a slot; True once one is taken."""
        ...


class RedisRateLimiter:
    """At most ``per_second`` acquisitions per second across all processes sharing ``key``.

    Rates below one per second use a longer window (0.5/s: one per 2 s window); within a
    window the allowance is rounded down to whole acquisitions.
    """

    # Waiters wake a little after the window turns, at slightly different moments, so that
    # they do not all hit Redis in the same millisecond.
    _MAX_JITTER = 0.01

    def __init__(
        self,
        redis_client: redis.Redis,
        key: str,
        per_second: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        window = max(1.0, 1.0 / per_second)
        self._redis = redis_client
        self._key = key
        self._window_ms = round(window * 1000)
        # The epsilon keeps 0.1 * 10 from rounding down to 0.
        self._limit = max(1, math.floor(per_second * window + 1e-9))
        # Wall-clock time, not monotonic: the window must be the same one in every process.
        self._clock = clock
        self._sleep = sleep

    @property
    def limit(self) -> int:
        """Acquisitions allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self._window_ms / 1000

    def try_acquire(self) -> tuple[bool, float]:
        """Take a slot if one is free; also says how long until the current window ends."""
        now_ms = int(self._clock() * 1000)
        index = now_ms // self._window_ms
        window_key = f"{self._key}:{index}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(window_key)
        # Twice the window so a key never outlives its use by long, even with clock skew.
        pipe.pexpire(window_key, 2 * self._window_ms)
        count, _ = pipe.execute()
        until_next = ((index + 1) * self._window_ms - now_ms) / 1000
        return int(count) <= self._limit, until_next

    def acquire(self, timeout: float) -> bool:
        deadline = self._clock() + max(0.0, timeout)
        while True:
            granted, until_next = self.try_acquire()
            if granted:
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(until_next + random.uniform(0, self._MAX_JITTER), remaining))
