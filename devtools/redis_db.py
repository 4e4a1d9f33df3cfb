"""A Redis database number of one's own on a shared server, for a test or benchmark run."""

from __future__ import annotations

import redis

MARKER = "loyalty-test-run"


def claim_redis_db(server_url: str, run_id: str) -> int:
    """Claim an empty database number (15 down to 1); never touch one in use."""
    for number in range(15, 0, -1):
        with redis.Redis.from_url(f"{server_url}/{number}") as client:
            # The marker is written only into an empty database, atomically, so two runs
            # at once cannot pick the same number.
            claimed = client.eval(
                "if redis.call('DBSIZE') == 0 then"
                " return redis.call('SET', KEYS[1], ARGV[1], 'NX') else return nil end",
                1, MARKER, run_id)
        if claimed:
            return number
    raise RuntimeError("no empty Redis database number left for this run")


def release_redis_db(server_url: str, number: int, run_id: str) -> None:
    """Empty the database, if it is still this run's."""
    with redis.Redis.from_url(f"{server_url}/{number}") as client:
        if client.get(MARKER) == run_id.encode():
            client.flushdb()
