"""The OA token pair in the database: saved (committed) before it is used."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from loyalty.storage.db import transaction
from loyalty.storage.tables import ZaloToken
from loyalty.zalo import TokenPair


class DbTokenStore:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def load(self) -> TokenPair | None:
        with transaction(self.sessions) as session:
            row = session.get(ZaloToken, 1)
            return None if row is None else TokenPair(row.access_token, row.refresh_token,
                                                      row.expires_at)

    def save(self, pair: TokenPair) -> None:
        with transaction(self.sessions) as session:
            row = session.get(ZaloToken, 1) or ZaloToken(id=1)
            row.access_token = pair.access_token
            row.refresh_token = pair.refresh_token
            row.expires_at = pair.expires_at
            row.updated_at = datetime.now(UTC)
            session.add(row)
