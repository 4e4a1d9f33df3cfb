"""The Graph API client against the fake Zalo over HTTP: what it sends, and how each answer is
sorted into "Zalo refused it" (the member's problem) and "Zalo cannot answer" (ours)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.fake_zalo import GRAPH_ME_PATH, GRAPH_PHONE_PATH, FakeZalo
from loyalty.zalo.graph import (
    GraphClient,
    GraphRefused,
    GraphUnavailable,
    ZaloIdentity,
    appsecret_proof,
)

SECRET = "miniapp-secret"


@pytest.fixture
def graph() -> Iterator[FakeZalo]:
    with FakeZalo(miniapp_secret_key=SECRET) as fake:
        yield fake


@pytest.fixture
def client(graph: FakeZalo) -> GraphClient:
    return GraphClient(graph.url, SECRET, timeout=0.5)


def test_appsecret_proof_is_hex_hmac_sha256_of_the_token_keyed_with_the_secret() -> None:
    # printf '%s' fake-user-token | openssl dgst -sha256 -hmac miniapp-secret
    assert appsecret_proof("fake-user-token", "miniapp-secret") == \
        "69aecf44292d4ab1a93d7028793f0500c6620cf31f26261b6c6b4ecdbb428484"


def test_me_tells_the_app_scoped_id_and_the_oa_user_id_when_zalo_knows_it(
        graph: FakeZalo, client: GraphClient) -> None:
    with_oa = graph.mint_user_token("app-1", name="Lan", oa_user_id="oa-1")
    without = graph.mint_user_token("app-2")
    assert client.me(with_oa) == ZaloIdentity("app-1", "oa-1")
    assert client.me(without) == ZaloIdentity("app-2", None)
    # The token travels in a header, never in the URL.
    assert graph.access_log[-2:] == [(GRAPH_ME_PATH, with_oa), (GRAPH_ME_PATH, without)]


def test_unknown_expired_and_wrongly_proven_tokens_are_refused(graph: FakeZalo) -> None:
    expired = graph.mint_user_token("app-1")
    graph.expire_user_token(expired)
    good = graph.mint_user_token("app-2")
    for token, client in [("not-a-token", GraphClient(graph.url, SECRET)),
                          (expired, GraphClient(graph.url, SECRET)),
                          (good, GraphClient(graph.url, "another-apps-secret"))]:
        with pytest.raises(GraphRefused) as refused:
            client.me(token)
        assert refused.value.code == 452


@pytest.mark.parametrize("failure", [
    {"http_status": 502}, {"http_status": 500}, {"delay": 2.0},
    {"error": -501, "message": "region restricted"}, {"error": -32},
    {"http_status": 200},  # an answer with neither an id nor an error code
], ids=["502", "500", "timeout", "region", "rate-limit", "no-id"])
def test_an_answer_zalo_cannot_give_now_is_unavailable_not_refused(
        graph: FakeZalo, client: GraphClient, failure: dict[str, Any]) -> None:
    token = graph.mint_user_token("app-1")
    graph.fail_next(GRAPH_ME_PATH, **failure)
    with pytest.raises(GraphUnavailable):
        client.me(token)
    assert client.me(token).zalo_id == "app-1"  # and it recovers


def test_connection_refused_is_unavailable(graph: FakeZalo) -> None:
    url = graph.url
    graph.stop()
    with pytest.raises(GraphUnavailable):
        GraphClient(url, SECRET, timeout=0.5).me("any")


def test_zalos_message_is_scrubbed_of_what_it_was_sent(graph: FakeZalo,
                                                        client: GraphClient) -> None:
    token = graph.mint_user_token("app-1")
    graph.fail_next(GRAPH_ME_PATH, error=452, message=f"Session key {token} invalid")
    with pytest.raises(GraphRefused) as refused:
        client.me(token)
    assert token not in str(refused.value) and "[redacted]" in str(refused.value)


def test_phone_exchange_gives_the_number_for_the_users_own_code(graph: FakeZalo,
                                                                client: GraphClient) -> None:
    token = graph.mint_user_token("app-1")
    other = graph.mint_user_token("app-2")
    code = graph.mint_phone_code(token, "84901234567")
    assert client.phone_number(token, code) == "84901234567"
    with pytest.raises(GraphRefused):
        client.phone_number(other, code)  # another user's code
    with pytest.raises(GraphRefused):
        client.phone_number(token, "made-up-code")
    with pytest.raises(GraphRefused):
        GraphClient(graph.url, "wrong-secret").phone_number(token, code)
    graph.fail_next(GRAPH_PHONE_PATH, http_status=503)
    with pytest.raises(GraphUnavailable):
        client.phone_number(token, code)
