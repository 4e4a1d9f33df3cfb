"""The composition root: everything one process needs, built from settings in one place.

Services receive a ``Loyalty`` and use its parts: the program in force, the database, the
clock and the shop's zone, and the adapters built here on first use (Redis, the Celery app
and its ``TaskQueue``, the message sender and what follows a sent message, Zalo's Graph API).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache, partial
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
from celery import Celery
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from loyalty.domain.channels import plan_for
from loyalty.domain.messages import Channel, MessageKind
from loyalty.embedded_redis import redis_url
from loyalty.program import Program, load_program
from loyalty.queueing import TaskQueue, make_celery
from loyalty.senders import LogSender, ZaloSender
from loyalty.services.outbox import OnSent
from loyalty.services.programs import DEFAULTS, ProgramInForce
from loyalty.services.tags import tag_nudged_member
from loyalty.settings import Settings, get_settings
from loyalty.storage.db import database_url, make_engine, make_session_factory
from loyalty.storage.zalo_tokens import DbTokenStore
from loyalty.zalo import RedisRateLimiter, TokenManager, TokenPair, ZaloClient
from loyalty.zalo.graph import Graph, GraphClient


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Loyalty:
    settings: Settings
    programs: ProgramInForce
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(cls, settings: Settings) -> Loyalty:
        # The program is read first: a bad file stops start-up before anything connects.
        configured = load_program(settings.program_file)
        source = str(Path(settings.program_file).resolve()) if settings.program_file \
            else DEFAULTS
        engine = make_engine(database_url(settings))
        sessions = make_session_factory(engine)
        programs = ProgramInForce(configured, source)
        # Every transaction starts by checking which program is in force.
        event.listen(sessions, "after_begin", programs.on_begin)
        return cls(settings, programs, engine, sessions)

    @property
    def program(self) -> Program:
        """The program in force as of the start of this process's latest transaction: read
        it inside the transaction that applies it (``services.programs``)."""
        return self.programs.program

    @cached_property
    def zone(self) -> ZoneInfo:
        """The shop's zone: schedules, campaign days, times shown to members."""
        return ZoneInfo(self.settings.timezone)

    def plan(self, kind: MessageKind) -> tuple[Channel, ...]:
        """The channels a message of ``kind`` may go through, in order: the program's plan,
        or the log when there are no Zalo credentials."""
        return plan_for(self.program, kind, to_zalo=self.settings.zalo_configured)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(redis_url(self.settings))

    @cached_property
    def celery(self) -> Celery:
        return make_celery(self.settings)

    @cached_property
    def tasks(self) -> TaskQueue:
        return TaskQueue(self.celery, self.settings.order_event_batch_size)

    @cached_property
    def sender(self) -> LogSender | ZaloSender:
        settings = self.settings
        if not settings.zalo_configured:
            return LogSender()
        tokens = TokenManager(
            DbTokenStore(self.sessions, settings.token_keys()), self.redis,
            app_id=settings.zalo_app_id,
            secret_key=settings.zalo_secret_key.get_secret_value(),
            oauth_url=settings.zalo_oauth_url, http_timeout=settings.zalo_timeout_seconds,
            lock_timeout=max(60.0, 3 * settings.zalo_timeout_seconds),
            # The configured pair is the first one; its age is unknown, so it is assumed
            # fresh and a rejection (-216) refreshes it.
            initial=TokenPair(settings.zalo_access_token.get_secret_value(),
                              settings.zalo_refresh_token.get_secret_value(),
                              utc_now() + timedelta(hours=24)))
        limiter = RedisRateLimiter(self.redis, "loyalty:zalo:rate",
                                   settings.zalo_rate_per_second)
        return ZaloSender(ZaloClient(api_url=settings.zalo_api_url,
                                     business_api_url=settings.zalo_business_api_url,
                                     tokens=tokens, timeout=settings.zalo_timeout_seconds,
                                     rate_limiter=limiter),
                          self.redis, self.program.channels.window_cache_seconds)

    @cached_property
    def graph(self) -> Graph:
        """Zalo's Graph API, which tells whose a Mini App user access token is."""
        settings = self.settings
        return GraphClient(settings.zalo_graph_url, settings.miniapp_secret,
                           timeout=settings.zalo_timeout_seconds)

    @cached_property
    def on_sent(self) -> Mapping[MessageKind, OnSent]:
        """What follows a sent message, by kind: the outbox itself knows no campaign."""
        return {MessageKind.NUDGE: partial(tag_nudged_member, self)}


@lru_cache
def get_loyalty() -> Loyalty:
    return Loyalty.from_settings(get_settings())
