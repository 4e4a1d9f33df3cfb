"""The calls of the channel plan against the fake Zalo over real HTTP: the quota call that
tells a member's window, and each refusal the plan moves on from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devtools.fake_zalo import CS_PATH, QUOTA_PATH, TEMPLATE_PATH, FakeZalo
from loyalty.domain.channels import Window, window_at
from loyalty.zalo import (
    ZaloClient,
    ZaloFinalError,
    ZaloRetryable,
    ZaloUnexpectedAnswer,
)


def test_the_quota_call_asks_by_user_id_and_tells_the_last_interaction(
        fake: FakeZalo, client: ZaloClient) -> None:
    fake.set_window("u-free", "free")
    fake.set_window("u-paid", "paid")
    fake.set_window("u-closed", "closed")
    fake.set_window("u-never", "never")
    now = datetime.now(UTC)
    windows = {user: window_at(client.last_interaction(user), now)
               for user in ("u-free", "u-paid", "u-closed", "u-never", "u-unset")}
    assert windows == {"u-free": Window.FREE, "u-paid": Window.PAID,
                       "u-closed": Window.CLOSED, "u-never": Window.CLOSED,
                       "u-unset": Window.FREE}
    free = client.last_interaction("u-free")
    assert free is not None and timedelta(0) < now - free < timedelta(hours=2)
    assert client.last_interaction("u-never") is None
    assert [path for path, _ in fake.access_log] == [QUOTA_PATH] * 7
    assert all(token == fake.initial_tokens.access_token for _, token in fake.access_log)


def test_an_answer_without_a_readable_time_is_not_understood(
        fake: FakeZalo, client: ZaloClient) -> None:
    fake.set_window("u1", "garbled")
    with pytest.raises(ZaloUnexpectedAnswer):
        client.last_interaction("u1")


def test_a_failed_quota_call_raises_and_a_refused_user_keeps_a_window(
        fake: FakeZalo, client: ZaloClient) -> None:
    fake.fail_next(QUOTA_PATH, http_status=503)
    with pytest.raises(ZaloRetryable):
        client.last_interaction("u1")
    fake.fail_user("u2", -213)  # not a follower: every message refused, the window still told
    assert client.last_interaction("u2") is not None
    fake.fail_user("u3", -213, path=QUOTA_PATH)
    with pytest.raises(ZaloFinalError):
        client.last_interaction("u3")


def test_a_consultation_message_outside_7_days_is_refused_with_230_as_zalo_does(
        fake: FakeZalo, client: ZaloClient) -> None:
    fake.set_window("u-paid", "paid")
    fake.set_window("u-closed", "closed")
    fake.set_window("u-never", "never")
    assert client.send_text("u-paid", "hello")  # billed, but accepted
    for user in ("u-closed", "u-never"):
        with pytest.raises(ZaloFinalError) as refused:
            client.send_text(user, "hello")
        assert refused.value.code == -230
    # The template by user id does not depend on the window.
    assert client.send_template("u-closed", "tpl-1", {"points": "1720"})
    assert [(r["path"], r["user_id"]) for r in fake.sent] == [
        (CS_PATH, "u-paid"), (TEMPLATE_PATH, "u-closed")]


def test_a_refusal_on_one_path_leaves_the_others(fake: FakeZalo, client: ZaloClient) -> None:
    fake.fail_user("u1", -230, path=CS_PATH)
    with pytest.raises(ZaloFinalError):
        client.send_text("u1", "hello")
    assert client.send_template("u1", "tpl-1", {"points": "1720"})
    fake.fail_user("u2", -213)
    for send in (lambda: client.send_text("u2", "hi"),
                 lambda: client.send_template("u2", "tpl-1", {})):
        with pytest.raises(ZaloFinalError) as refused:
            send()
        assert refused.value.code == -213


def test_zns_carries_tracking_id_and_84_phone_and_refuses_a_bad_phone_with_108(
        fake: FakeZalo, client: ZaloClient) -> None:
    assert client.send_zns("0901 234 567", "tpl-1", {"points": "1720"}, tracking_id="42")
    [record] = fake.sent
    assert (record["phone"], record["tracking_id"], record["template_data"]) == \
        ("84901234567", "42", {"points": "1720"})
    fake.fail_user("84901234568", -108)  # a number Zalo cannot deliver to
    with pytest.raises(ZaloFinalError) as refused:
        client.send_zns("0901234568", "tpl-1", {}, tracking_id="43")
    assert refused.value.code == -108
