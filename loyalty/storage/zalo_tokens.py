"""The OA token pair in the database: saved (committed) before it is used, encrypted at rest.

Both tokens are stored as Fernet ciphertext under ``LOYALTY_ZALO_TOKEN_KEYS`` (MultiFernet:
the first key encrypts, every listed key decrypts), so that a database dump, a backup or a
read-only replica does not hand out the shop's Official Account.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from loyalty.storage.db import transaction
from loyalty.storage.tables import ZaloToken
from loyalty.zalo import TokenPair, ZaloTokenError

log = logging.getLogger("loyalty.zalo.tokens")


class TokenKeyError(ZaloTokenError):
    """The stored pair cannot be decrypted with any configured key.

    A ZaloTokenError: sending holds until it is fixed, and no new pair replaces the stored
    one (the configured pair may long be spent).
    """


def _unreadable() -> TokenKeyError:
    return TokenKeyError(None, "the stored Zalo token pair cannot be decrypted with any key of "
                               "LOYALTY_ZALO_TOKEN_KEYS: list the key it was encrypted with "
                               "(while rotating, the new key first and the old one after it)")


class DbTokenStore:
    def __init__(self, sessions: sessionmaker[Session], keys: Sequence[str]):
        if not keys:
            raise ValueError("LOYALTY_ZALO_TOKEN_KEYS is empty: the Zalo token pair is only "
                             "stored encrypted")
        self.sessions = sessions
        self._cipher = MultiFernet([Fernet(key) for key in keys])

    def load(self) -> TokenPair | None:
        with transaction(self.sessions) as session:
            row = session.get(ZaloToken, 1)
            if row is None:
                return None
            if not row.encrypted:
                return self._encrypt_clear_row(session, row)
            return self._pair(row)

    def save(self, pair: TokenPair) -> None:
        with transaction(self.sessions) as session:
            row = session.get(ZaloToken, 1) or ZaloToken(id=1)
            self._write(row, pair)
            row.updated_at = datetime.now(UTC)
            session.add(row)

    def rotate(self) -> bool:
        """Encrypt the stored pair again with the first key; False when none is stored."""
        with transaction(self.sessions) as session:
            # Locked: a refresh saving a new pair meanwhile must not be overwritten.
            row = session.get(ZaloToken, 1, with_for_update=True)
            if row is None:
                return False
            if not row.encrypted:
                self._write(row, self._pair(row))
                return True
            try:
                row.access_token = self._cipher.rotate(row.access_token.encode()).decode()
                row.refresh_token = self._cipher.rotate(row.refresh_token.encode()).decode()
            except InvalidToken:
                raise _unreadable() from None
            return True

    def _encrypt_clear_row(self, session: Session, row: ZaloToken) -> TokenPair:
        # Stored in clear by a version before migration 0010. Read again under a lock so
        # that a pair saved meanwhile by a refresh is not overwritten with this older one.
        session.refresh(row, with_for_update=True)
        pair = self._pair(row)
        if not row.encrypted:
            self._write(row, pair)
            log.warning("the Zalo token pair was stored in clear; it is encrypted now")
        return pair

    def _pair(self, row: ZaloToken) -> TokenPair:
        if not row.encrypted:
            return TokenPair(row.access_token, row.refresh_token, row.expires_at)
        try:
            return TokenPair(self._cipher.decrypt(row.access_token.encode()).decode(),
                             self._cipher.decrypt(row.refresh_token.encode()).decode(),
                             row.expires_at)
        except InvalidToken:
            error = _unreadable()
            log.error(str(error))
            raise error from None

    def _write(self, row: ZaloToken, pair: TokenPair) -> None:
        row.access_token = self._cipher.encrypt(pair.access_token.encode()).decode()
        row.refresh_token = self._cipher.encrypt(pair.refresh_token.encode()).decode()
        row.expires_at = pair.expires_at
        row.encrypted = True
