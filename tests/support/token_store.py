"""A Zalo token store in memory, for the client's tests."""

from __future__ import annotations

import threading

from loyalty.zalo import TokenPair


class InMemoryTokenStore:
    """A TokenStore for tests and single-process tools."""

    def __init__(self, pair: TokenPair | None = None) -> None:
        self._pair = pair
        self._lock = threading.Lock()

    def load(self) -> TokenPair | None:
        with self._lock:
            return self._pair

    def save(self, pair: TokenPair) -> None:
        with self._lock:
            self._pair = pair
