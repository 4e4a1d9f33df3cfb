"""The Zalo client and its token handling, against the fake Zalo over real HTTP."""

from __future__ import annotations

import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from devtools.fake_zalo import CS_PATH, TOKEN_PATH, ZNS_PATH, FakeZalo
from loyalty.zalo import (
    ErrorKind,
    TokenManager,
    TokenPair,
    ZaloClient,
    ZaloError,
    ZaloFinalError,
    ZaloNightBan,
    ZaloQuotaExceeded,
    ZaloRetryable,
    ZaloTokenError,
    classify,
    mask_phone,
    normalise_phone,
    retry_after_from_headers,
)
from tests.support.token_store import InMemoryTokenStore

USER = "8756431234567890123"
TAG = "Đã gửi tin"


def closed_port_url() -> str:
    """A local URL nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def tokens_used(fake: FakeZalo, path: str = CS_PATH) -> list[str | None]:
    return [token for logged_path, token in fake.access_log if logged_path == path]


# -- error classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "kind"),
    [
        ([-216, -220, -124], ErrorKind.TOKEN),
        ([-32], ErrorKind.RATE_LIMIT),
        ([-234, -133], ErrorKind.NIGHT_BAN),
        ([-211, -218, -144], ErrorKind.QUOTA),
        (
            [-201, -213, -217, -227, -230, -232, -233, -244, -108, -114, -119, -131, -1, -999],
            ErrorKind.FINAL,
        ),
    ],
)
def test_classify_sorts_codes_by_what_to_do(codes: list[int], kind: ErrorKind) -> None:
    assert {classify(code) for code in codes} == {kind}


@pytest.mark.parametrize(
    "error",
    [
        ZaloRetryable(-32, "slow down", retry_after=2.5),
        ZaloRetryable(None, "timeout"),
        ZaloFinalError(-213, "not a follower"),
        ZaloTokenError(None, "refused"),
    ],
)
def test_errors_survive_pickling_for_celery(error: ZaloError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.code, copy.message, str(copy)) == (error.code, error.message, str(error))
    assert getattr(copy, "retry_after", None) == getattr(error, "retry_after", None)


def test_retry_after_is_read_from_headers() -> None:
    now = 1_800_000_000.0
    in_ten_seconds = format_datetime(datetime.fromtimestamp(now + 10, UTC), usegmt=True)
    assert retry_after_from_headers({"Retry-After": "5"}, now) == 5
    assert retry_after_from_headers({"Retry-After": in_ten_seconds}, now) == pytest.approx(10)
    assert retry_after_from_headers({"X-RateLimit-Reset": str(now + 30)}, now) == 30
    assert retry_after_from_headers({"X-RateLimit-Reset": "12"}, now) == 12
    assert retry_after_from_headers({}, now) is None


# -- sending ------------------------------------------------------------------------------


def test_consultation_message_is_delivered_with_body_and_token_header(
    fake: FakeZalo, client: ZaloClient
) -> None:
    message_id = client.send_text(USER, "Chỉ còn vài điểm nữa là lên hạng")

    [record] = fake.sent
    assert record["path"] == CS_PATH
    assert record["body"] == {
        "recipient": {"user_id": USER},
        "message": {"text": "Chỉ còn vài điểm nữa là lên hạng"},
    }
    assert record["message_id"] == message_id
    assert tokens_used(fake) == [fake.initial_tokens.access_token]
    assert fake.refresh_calls == 0


def test_template_message_is_delivered(fake: FakeZalo, client: ZaloClient) -> None:
    message_id = client.send_template(USER, "tpl-1", {"points": 1720})

    [record] = fake.sent
    assert record["body"] == {
        "recipient": {"user_id": USER},
        "template_id": "tpl-1",
        "template_data": {"points": 1720},
    }
    assert record["message_id"] == message_id


@pytest.mark.parametrize(
    "phone", ["0912345678", "+84912345678", "84912345678", "+84 91 234 5678", "0084912345678"]
)
def test_zns_phone_is_normalised_to_84(fake: FakeZalo, client: ZaloClient, phone: str) -> None:
    message_id = client.send_zns(phone, "zns-7", {"name": "Lan"}, "track-1")

    [record] = fake.sent
    assert record["path"] == ZNS_PATH
    assert record["phone"] == "84912345678"
    assert record["tracking_id"] == "track-1"
    assert record["message_id"] == message_id


@pytest.mark.parametrize("phone", ["12345", "0912", "+1 202 555 0100", "không có", ""])
def test_bad_phone_is_final_and_nothing_is_sent(
    fake: FakeZalo, client: ZaloClient, phone: str
) -> None:
    with pytest.raises(ValueError):
        normalise_phone(phone)
    with pytest.raises(ZaloFinalError):
        client.send_zns(phone, "zns-7", {}, "track-1")
    assert fake.sent == []


def test_phone_mask_keeps_last_three_digits() -> None:
    assert mask_phone("0912 345 678") == "*******678"


def test_tag_and_untag_follower(fake: FakeZalo, client: ZaloClient) -> None:
    client.tag_follower(USER, TAG)
    client.tag_follower("other-user", TAG)
    assert fake.tags == {TAG: {USER, "other-user"}}

    client.untag_follower(USER, TAG)
    assert fake.tags == {TAG: {"other-user"}}


# -- token refresh ------------------------------------------------------------------------


def test_invalid_token_leads_to_one_refresh_and_one_retry(
    fake: FakeZalo, client: ZaloClient, store: InMemoryTokenStore
) -> None:
    fake.fail_next(CS_PATH, error=-216)

    client.send_text(USER, "hello")

    new_pair = store.load()
    assert new_pair is not None and new_pair != fake.initial_tokens
    assert fake.refresh_calls == 1
    assert tokens_used(fake) == [fake.initial_tokens.access_token, new_pair.access_token]
    assert len(fake.sent) == 1


def test_expired_token_leads_to_one_refresh_and_one_retry(
    fake: FakeZalo, client: ZaloClient, store: InMemoryTokenStore
) -> None:
    fake.expire_tokens()

    client.send_text(USER, "hello")

    new_pair = store.load()
    assert new_pair is not None
    assert fake.refresh_calls == 1
    assert tokens_used(fake) == [fake.initial_tokens.access_token, new_pair.access_token]
    assert new_pair.expires_at > datetime.now(UTC) + timedelta(hours=24)
    assert len(fake.sent) == 1


def test_zns_token_error_also_refreshes(fake: FakeZalo, client: ZaloClient) -> None:
    fake.expire_tokens()

    client.send_zns("0912345678", "zns-7", {}, "track-1")

    assert fake.refresh_calls == 1
    assert len(tokens_used(fake, ZNS_PATH)) == 2
    assert len(fake.sent) == 1


def test_token_refused_after_refresh_raises_token_error(fake: FakeZalo, client: ZaloClient) -> None:
    fake.fail_next(CS_PATH, error=-220, times=2)

    with pytest.raises(ZaloTokenError) as caught:
        client.send_text(USER, "hello")

    assert caught.value.code == -220
    assert fake.refresh_calls == 1
    assert len(tokens_used(fake)) == 2
    assert fake.sent == []


def test_twenty_workers_at_once_refresh_exactly_once(
    fake: FakeZalo,
    make_manager: Callable[..., TokenManager],
    make_client: Callable[..., ZaloClient],
) -> None:
    # Each thread has its own manager, client and session, like a separate worker process;
    # only the store and the Redis lock are shared.
    workers = 20
    clients = []
    for _ in range(workers):
        session = requests.Session()
        clients.append(make_client(tokens=make_manager(session=session), session=session))
    fake.expire_tokens()
    start = threading.Barrier(workers)
    failures: list[BaseException] = []

    def send(index: int) -> None:
        start.wait()
        try:
            clients[index].send_text(f"user-{index}", f"hello {index}")
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert fake.refresh_calls == 1
    assert fake.refresh_rejections == 0
    assert sorted(record["user_id"] for record in fake.sent) == sorted(
        f"user-{i}" for i in range(workers)
    )
    for worker_client in clients:
        worker_client.close()


class RecordingStore(InMemoryTokenStore):
    """Checks, at each save, that Zalo has not yet seen the pair being saved."""

    def __init__(self, pair: TokenPair, fake: FakeZalo) -> None:
        super().__init__(pair)
        self.fake = fake
        self.saves: list[tuple[TokenPair, int]] = []

    def save(self, pair: TokenPair) -> None:
        calls_so_far = self.fake.access_log
        assert pair.access_token not in [token for _, token in calls_so_far]
        self.saves.append((pair, len(calls_so_far)))
        super().save(pair)


def test_new_pair_is_saved_before_it_is_used(
    fake: FakeZalo,
    make_manager: Callable[..., TokenManager],
    make_client: Callable[..., ZaloClient],
) -> None:
    store = RecordingStore(fake.initial_tokens, fake)
    client = make_client(tokens=make_manager(store=store))
    fake.expire_tokens()

    client.send_text(USER, "hello")

    [(saved, calls_before_save)] = store.saves
    uses = [i for i, (_, token) in enumerate(fake.access_log) if token == saved.access_token]
    assert uses and min(uses) >= calls_before_save


class BrokenStore(InMemoryTokenStore):
    def save(self, pair: TokenPair) -> None:
        raise RuntimeError("database is down")


def test_a_pair_that_cannot_be_saved_is_never_used(
    fake: FakeZalo,
    make_manager: Callable[..., TokenManager],
    make_client: Callable[..., ZaloClient],
) -> None:
    client = make_client(tokens=make_manager(store=BrokenStore(fake.initial_tokens)))
    fake.expire_tokens()

    with pytest.raises(RuntimeError):
        client.send_text(USER, "hello")

    assert fake.refresh_calls == 1
    assert set(tokens_used(fake)) == {fake.initial_tokens.access_token}
    assert fake.sent == []


def test_a_second_worker_uses_the_pair_the_first_one_got(
    fake: FakeZalo, make_manager: Callable[..., TokenManager]
) -> None:
    first, second = make_manager(), make_manager(session=requests.Session())
    rejected = fake.initial_tokens.access_token

    pair = first.refresh_after_rejection(rejected)

    assert second.refresh_after_rejection(rejected) == pair
    assert fake.refresh_calls == 1
    assert fake.refresh_rejections == 0


def test_a_refresh_token_is_never_sent_twice_even_after_a_failed_refresh(
    fake: FakeZalo, tokens: TokenManager, store: InMemoryTokenStore
) -> None:
    fake.fail_next(TOKEN_PATH, http_status=503)
    rejected = fake.initial_tokens.access_token

    with pytest.raises(ZaloTokenError):
        tokens.refresh_after_rejection(rejected)
    with pytest.raises(ZaloTokenError, match="already sent once"):
        tokens.refresh_after_rejection(rejected)

    assert fake.refresh_tokens_received == [fake.initial_tokens.refresh_token]
    assert store.load() == fake.initial_tokens


def test_refusal_answered_with_http_200_is_not_taken_for_a_pair(
    fake: FakeZalo, tokens: TokenManager, store: InMemoryTokenStore
) -> None:
    unknown = TokenPair("at-unknown", "rt-unknown", datetime.now(UTC) + timedelta(hours=1))
    store.save(unknown)

    with pytest.raises(ZaloTokenError, match="Invalid refresh_token"):
        tokens.refresh_after_rejection(unknown.access_token)

    assert fake.refresh_rejections == 1
    assert store.load() == unknown


def test_unreachable_oauth_host_is_retryable_and_spends_nothing(
    fake: FakeZalo, make_manager: Callable[..., TokenManager], store: InMemoryTokenStore
) -> None:
    rejected = fake.initial_tokens.access_token

    with pytest.raises(ZaloRetryable):
        make_manager(oauth_url=closed_port_url()).refresh_after_rejection(rejected)
    pair = make_manager().refresh_after_rejection(rejected)

    assert fake.refresh_tokens_received == [fake.initial_tokens.refresh_token]
    assert store.load() == pair != fake.initial_tokens


def test_proactive_refresh_when_little_time_is_left(
    fake: FakeZalo, client: ZaloClient, store: InMemoryTokenStore
) -> None:
    initial = fake.initial_tokens
    store.save(
        TokenPair(
            initial.access_token, initial.refresh_token, datetime.now(UTC) + timedelta(hours=1)
        )
    )

    client.send_text(USER, "hello")

    new_pair = store.load()
    assert new_pair is not None and new_pair.access_token != initial.access_token
    assert fake.refresh_calls == 1
    assert tokens_used(fake) == [new_pair.access_token]


def test_no_proactive_refresh_while_time_is_left(fake: FakeZalo, tokens: TokenManager) -> None:
    now = datetime.now(UTC)

    assert tokens.ensure_fresh(now + timedelta(hours=22)) == fake.initial_tokens
    assert fake.refresh_calls == 0
    assert tokens.ensure_fresh(now + timedelta(hours=23, minutes=30)) != fake.initial_tokens
    assert fake.refresh_calls == 1


def test_failed_proactive_refresh_still_sends_with_the_valid_token(
    fake: FakeZalo, client: ZaloClient, store: InMemoryTokenStore
) -> None:
    initial = fake.initial_tokens
    soon = TokenPair(
        initial.access_token, initial.refresh_token, datetime.now(UTC) + timedelta(hours=1)
    )
    store.save(soon)
    fake.fail_next(TOKEN_PATH, http_status=503)

    client.send_text(USER, "hello")

    assert fake.refresh_calls == 1
    assert tokens_used(fake) == [initial.access_token]
    assert store.load() == soon


def test_manager_refuses_a_lock_shorter_than_the_http_call(
    make_manager: Callable[..., TokenManager],
) -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        make_manager(http_timeout=10, lock_timeout=10)


def test_empty_store_is_seeded_with_the_initial_pair(
    fake: FakeZalo, make_manager: Callable[..., TokenManager]
) -> None:
    empty = InMemoryTokenStore()
    assert make_manager(store=empty, initial=fake.initial_tokens).current() == fake.initial_tokens
    assert empty.load() == fake.initial_tokens

    with pytest.raises(ZaloTokenError):
        make_manager(store=InMemoryTokenStore()).current()


def test_token_pair_needs_an_aware_expiry_and_hides_tokens() -> None:
    with pytest.raises(ValueError):
        TokenPair("at", "rt", datetime(2026, 1, 1))
    pair = TokenPair("secret-at", "secret-rt", datetime(2026, 1, 1, tzinfo=UTC))
    assert "secret" not in repr(pair)


def test_logs_hold_no_tokens_and_only_masked_phones(
    fake: FakeZalo,
    client: ZaloClient,
    store: InMemoryTokenStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.expire_tokens()
    fake.fail_next(ZNS_PATH, error=-114)

    with pytest.raises(ZaloFinalError):
        client.send_zns("0912345678", "zns-7", {}, "track-1")
    client.send_text(USER, "hello")

    new_pair = store.load()
    assert new_pair is not None
    secrets = [
        fake.initial_tokens.access_token,
        fake.initial_tokens.refresh_token,
        new_pair.access_token,
        new_pair.refresh_token,
        fake.secret_key,
    ]
    assert caplog.text
    assert not [secret for secret in secrets if secret in caplog.text]
    assert "912345678" not in caplog.text
    assert "*******678" in caplog.text


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "retry_after"),
    [
        ({"http_status": 500}, None),
        ({"http_status": 503, "retry_after": 3}, 3),
        ({"error": -32}, None),
        ({"error": -32, "retry_after": 7}, 7),
    ],
)
def test_server_errors_and_rate_limit_are_retryable_and_send_nothing(
    fake: FakeZalo, client: ZaloClient, failure: dict[str, int], retry_after: float | None
) -> None:
    fake.fail_next(CS_PATH, **failure)

    with pytest.raises(ZaloRetryable) as caught:
        client.send_text(USER, "hello")

    assert caught.value.retry_after == retry_after
    assert fake.sent == []
    assert fake.refresh_calls == 0


def test_slow_answer_is_a_retryable_timeout(
    fake: FakeZalo, make_client: Callable[..., ZaloClient]
) -> None:
    client = make_client(timeout=0.3)
    fake.fail_next(CS_PATH, delay=2.0)

    started = time.monotonic()
    with pytest.raises(ZaloRetryable, match="no answer"):
        client.send_text(USER, "hello")

    assert time.monotonic() - started < 1.5


def test_unreachable_api_is_retryable(make_client: Callable[..., ZaloClient]) -> None:
    with pytest.raises(ZaloRetryable, match="connection"):
        make_client(api_url=closed_port_url()).send_text(USER, "hello")


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        *[(code, ZaloFinalError) for code in (-201, -213, -217, -227, -230, -232, -233, -244)],
        (-234, ZaloNightBan),
        (-211, ZaloQuotaExceeded),
        (-218, ZaloQuotaExceeded),
    ],
)
def test_zalo_error_codes_raise_their_exception(
    fake: FakeZalo, client: ZaloClient, code: int, exception: type[ZaloError]
) -> None:
    fake.fail_next(CS_PATH, error=code)

    with pytest.raises(exception) as caught:
        client.send_text(USER, "hello")

    assert caught.value.code == code
    assert fake.sent == []


@pytest.mark.parametrize(("code", "exception"), [(-133, ZaloNightBan), (-144, ZaloQuotaExceeded)])
def test_zns_night_ban_and_quota(
    fake: FakeZalo, client: ZaloClient, code: int, exception: type[ZaloError]
) -> None:
    fake.fail_next(ZNS_PATH, error=code)

    with pytest.raises(exception):
        client.send_zns("0912345678", "zns-7", {}, "track-1")


def test_a_recipient_who_is_not_a_follower_is_final_for_that_recipient_only(
    fake: FakeZalo, client: ZaloClient
) -> None:
    fake.fail_user("stranger", -213)

    with pytest.raises(ZaloFinalError) as caught:
        client.send_text("stranger", "hello")
    client.send_text(USER, "hello")

    assert caught.value.code == -213
    assert [record["user_id"] for record in fake.sent] == [USER]


def test_fake_server_refuses_a_reused_refresh_token(fake: FakeZalo) -> None:
    form = {
        "app_id": fake.app_id,
        "refresh_token": fake.initial_tokens.refresh_token,
        "grant_type": "refresh_token",
    }
    headers = {"secret_key": fake.secret_key}

    first = requests.post(fake.url + TOKEN_PATH, data=form, headers=headers, timeout=2).json()
    again = requests.post(fake.url + TOKEN_PATH, data=form, headers=headers, timeout=2).json()

    assert first["access_token"] and first["expires_in"] == "90000"
    assert again["error"] != 0 and "access_token" not in again
    assert (fake.refresh_calls, fake.refresh_rejections) == (2, 1)


def test_without_a_rate_limit_slot_nothing_is_sent(
    fake: FakeZalo, make_client: Callable[..., ZaloClient]
) -> None:
    class NoSlot:
        def acquire(self, timeout: float) -> bool:
            return False

    with pytest.raises(ZaloRetryable, match="rate-limit"):
        make_client(rate_limiter=NoSlot()).send_text(USER, "hello")
    assert fake.access_log == []
