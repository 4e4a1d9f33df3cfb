"""The Zalo token pair at rest: encrypted with the keys of the settings, readable after a key
rotation, a pair of the previous version encrypted on first read, a wrong key a clear error."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from alembic import command
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from sqlalchemy import text

from devtools.processes import ROOT, settings_env
from loyalty.bootstrap import Loyalty
from loyalty.settings import Settings
from loyalty.storage.migrate import alembic_config, upgrade
from loyalty.storage.zalo_tokens import DbTokenStore, TokenKeyError
from loyalty.zalo import TokenManager, TokenPair

LOYALTY = str(Path(sys.executable).parent / "loyalty")
PAIR = TokenPair("fake-at-stored-access-token", "fake-rt-stored-refresh-token",
                 datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
OLD_KEY, NEW_KEY, WRONG_KEY = (Fernet.generate_key().decode() for _ in range(3))


def raw_row(loyalty: Loyalty) -> dict[str, Any]:
    with loyalty.engine.connect() as connection:
        return dict(connection.execute(text("SELECT * FROM zalo_tokens")).mappings().one())


def rotate_key(loyalty: Loyalty, keys: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOYALTY, "zalo", "rotate-key"], cwd=ROOT,
                          env=settings_env(loyalty.settings, LOYALTY_ZALO_TOKEN_KEYS=keys),
                          capture_output=True, text=True, timeout=120)


def test_the_stored_pair_is_fernet_ciphertext_never_the_tokens(loyalty: Loyalty) -> None:
    store = DbTokenStore(loyalty.sessions, [OLD_KEY])
    store.save(PAIR)

    row = raw_row(loyalty)
    assert not any(token in str(value) for value in row.values()
                   for token in (PAIR.access_token, PAIR.refresh_token))
    assert Fernet(OLD_KEY).decrypt(row["access_token"].encode()).decode() == PAIR.access_token
    assert store.load() == PAIR


def test_rotate_key_encrypts_the_pair_with_the_first_key(loyalty: Loyalty) -> None:
    DbTokenStore(loyalty.sessions, [OLD_KEY]).save(PAIR)
    before = raw_row(loyalty)

    done = rotate_key(loyalty, f"{NEW_KEY},{OLD_KEY}")
    assert done.returncode == 0, done.stderr
    assert "encrypted with the first key" in done.stdout

    after = raw_row(loyalty)
    assert after["access_token"] != before["access_token"]
    assert DbTokenStore(loyalty.sessions, [NEW_KEY]).load() == PAIR  # the old key can go
    with pytest.raises(TokenKeyError):
        DbTokenStore(loyalty.sessions, [OLD_KEY]).load()


def test_a_wrong_key_is_a_clear_error_and_never_a_new_pair(
        loyalty: Loyalty, redis_url: str) -> None:
    DbTokenStore(loyalty.sessions, [OLD_KEY]).save(PAIR)
    before = raw_row(loyalty)
    wrong = DbTokenStore(loyalty.sessions, [WRONG_KEY])

    with pytest.raises(TokenKeyError, match="cannot be decrypted with any key of "
                                            "LOYALTY_ZALO_TOKEN_KEYS"):
        wrong.load()
    # The manager seeds an empty store with the configured (maybe long spent) pair: a pair
    # it cannot read must stop it instead.
    client = redis.Redis.from_url(redis_url)
    try:
        manager = TokenManager(wrong, client, app_id="app", secret_key="secret",
                               oauth_url="http://127.0.0.1:9", lock_name="test:wrong-key",
                               initial=TokenPair("fake-at-configured", "fake-rt-configured",
                                                 datetime.now(UTC) + timedelta(hours=1)))
        with pytest.raises(TokenKeyError):
            manager.ensure_fresh()
    finally:
        client.close()
    done = rotate_key(loyalty, WRONG_KEY)
    assert done.returncode == 1
    assert "cannot be decrypted with any key of LOYALTY_ZALO_TOKEN_KEYS" in done.stderr
    assert raw_row(loyalty) == before


def test_a_pair_stored_in_clear_before_0010_is_encrypted_on_first_read(
        empty_database: Settings) -> None:
    loyalty = Loyalty.from_settings(empty_database)
    url = loyalty.engine.url.render_as_string(hide_password=False)
    try:
        command.upgrade(alembic_config(url), "0009")  # the previous version's schema
        with loyalty.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO zalo_tokens (id, access_token, refresh_token, expires_at, "
                "updated_at) VALUES (1, :access, :refresh, :expires, :expires)"),
                {"access": PAIR.access_token, "refresh": PAIR.refresh_token,
                 "expires": PAIR.expires_at})
        upgrade(url)
        assert raw_row(loyalty)["access_token"] == PAIR.access_token  # a migration has no key

        assert DbTokenStore(loyalty.sessions, [OLD_KEY]).load() == PAIR
        row = raw_row(loyalty)
        assert row["encrypted"] and PAIR.access_token not in row["access_token"]
        assert DbTokenStore(loyalty.sessions, [OLD_KEY]).load() == PAIR
    finally:
        loyalty.engine.dispose()


def test_zalo_configured_without_a_key_is_refused_at_start_up(loyalty: Loyalty) -> None:
    zalo = {"zalo_app_id": "app", "zalo_access_token": SecretStr("fake-at-configured")}
    with pytest.raises(ValidationError, match="LOYALTY_ZALO_TOKEN_KEYS must be set") as refused:
        Settings(**zalo)
    assert "fake-at-configured" not in str(refused.value)
    with pytest.raises(ValidationError, match="key 2 of 2 is not a Fernet key") as refused:
        Settings(**zalo, zalo_token_keys=SecretStr(f"{OLD_KEY},not-a-key"))
    assert OLD_KEY not in str(refused.value)
    assert Settings(**zalo, zalo_token_keys=SecretStr(OLD_KEY)).token_keys() == [OLD_KEY]
    assert Settings().token_keys() == []  # no Zalo (the demo): no key needed

    done = subprocess.run([LOYALTY, "stats"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=settings_env(
                              loyalty.settings, LOYALTY_ZALO_APP_ID="app",
                              LOYALTY_ZALO_ACCESS_TOKEN="fake-at-configured"))
    assert done.returncode == 1
    assert "LOYALTY_ZALO_TOKEN_KEYS must be set when Zalo is configured" in done.stderr
    assert "fake-at-configured" not in done.stderr
