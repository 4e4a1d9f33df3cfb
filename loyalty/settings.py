"""Settings from the environment (``LOYALTY_*``) or a ``.env`` file (SPEC §6)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NEW_KEY_COMMAND = ('python -c "from cryptography.fernet import Fernet; '
                   'print(Fernet.generate_key().decode())"')


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not print the secrets next to it.
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    database_url: str | None = None
    redis_url: str | None = None
    program_file: Path | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    # Where the embedded defaults keep their files (SQLite database, embedded Redis).
    data_dir: Path = Path(".loyalty")

    webhook_secret: SecretStr = SecretStr("")
    api_token: SecretStr = SecretStr("")
    # The largest webhook body read. 4 MiB holds a full batch of 1000 events even with every
    # text field at its longest and written as \u escapes (3.9 kB an event, 3.7 MiB the
    # batch; a usual event is under 400 bytes); a larger body is refused with 413 before it
    # is all read.
    max_body_bytes: int = 4 * 1024 * 1024
    # /docs, /redoc and /openapi.json describe every route to whoever asks: off unless wanted.
    api_docs: bool = False

    zalo_api_url: str = "https://openapi.zalo.me"
    zalo_oauth_url: str = "https://oauth.zaloapp.com"
    zalo_business_api_url: str = "https://business.openapi.zalo.me"
    zalo_app_id: str = ""
    zalo_secret_key: SecretStr = SecretStr("")
    zalo_access_token: SecretStr = SecretStr("")
    zalo_refresh_token: SecretStr = SecretStr("")
    # Fernet keys, comma-separated: the first encrypts the stored token pair, all decrypt
    # (an old key stays listed after the new one until `loyalty zalo rotate-key` has run).
    zalo_token_keys: SecretStr = SecretStr("")
    zalo_timeout_seconds: float = 10.0
    zalo_rate_per_second: float = 50.0

    # Order events per Celery task: a webhook or producer batch is split by customer into
    # tasks of at most this many, each applied in one transaction.
    order_event_batch_size: int = Field(default=100, ge=1, le=1000)

    # The member's own page (SPEC §4 "The member's page"): Zalo's Graph API verifies the
    # user access token the Mini App sends.
    zalo_graph_url: str = "https://graph.zalo.me"
    # Comma-separated origins a browser may call /v1/me from (CORS); none by default.
    miniapp_origins: str = ""
    # Secret of the Zalo app that owns the Mini App; empty: zalo_secret_key.
    miniapp_secret_key: SecretStr = SecretStr("")
    # A verified token is trusted from the cache this long without asking Zalo again …
    miniapp_token_cache_minutes: int = Field(default=5, ge=0)
    # … and this much longer while Zalo cannot be reached.
    miniapp_token_grace_minutes: int = Field(default=30, ge=0)

    # A task not acknowledged within this time is handed to another worker: how long the
    # work of a worker that died waits. Every task is idempotent, so a redelivery of one
    # still running costs time, never a double effect; retries wait at most half of it.
    # Longer than every task (the daily scan, a send with its token refresh and rate-limit
    # wait); see README "Settings" for the trade-off.
    broker_visibility_timeout: int = 60
    # How often a worker looks for such tasks.
    broker_restore_interval: int = 10

    @property
    def zalo_configured(self) -> bool:
        return bool(self.zalo_app_id and self.zalo_access_token.get_secret_value())

    @property
    def miniapp_secret(self) -> str:
        """The Mini App's app secret: ``appsecret_proof`` and the phone exchange."""
        return self.miniapp_secret_key.get_secret_value() or \
            self.zalo_secret_key.get_secret_value()

    @property
    def miniapp_origin_list(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.miniapp_origins.split(",")
                if origin.strip()]

    def token_keys(self) -> list[str]:
        return [key.strip() for key in self.zalo_token_keys.get_secret_value().split(",")
                if key.strip()]

    @model_validator(mode="after")
    def _token_keys_usable(self) -> Settings:
        # At start-up, in every process: a worker must not find out at its first send.
        keys = self.token_keys()
        if self.zalo_configured and not keys:
            raise ValueError(
                "LOYALTY_ZALO_TOKEN_KEYS must be set when Zalo is configured: the token pair "
                f"is stored encrypted with it. Make a key with: {NEW_KEY_COMMAND}")
        for number, key in enumerate(keys, 1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"LOYALTY_ZALO_TOKEN_KEYS: key {number} of {len(keys)} is not a Fernet key "
                    f"(32 url-safe base64-encoded bytes); make one with: {NEW_KEY_COMMAND}"
                ) from None
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
