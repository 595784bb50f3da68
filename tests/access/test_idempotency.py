"""What a request with an Idempotency-Key gets: served, replayed, told to wait, or refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access import idempotency
from embedportal.access.idempotency import Claimed, InProgress, KeyReused, Replay
from embedportal.db.session import create_db_engine, create_session_factory

NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
API_KEY_ID = "3f9c0a1b2c4d"


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()


def _claim(
    factory: sessionmaker[Session], key: str = "k", fingerprint: str = "f", now: datetime = NOW
) -> object:
    return idempotency.claim(
        session_factory=factory,
        api_key_id=API_KEY_ID,
        key=key,
        fingerprint=fingerprint,
        now=now,
    )


def _keep(factory: sessionmaker[Session], key: str = "k") -> None:
    idempotency.keep_answer(
        session_factory=factory,
        api_key_id=API_KEY_ID,
        key=key,
        status_code=201,
        content_type="application/json",
        body=b'{"id": 1}',
    )


def test_first_served_then_replayed(factory: sessionmaker[Session]) -> None:
    assert _claim(factory) == Claimed()
    _keep(factory)
    assert _claim(factory) == Replay(201, "application/json", b'{"id": 1}')


def test_while_the_first_is_served_a_retry_waits_until_it_is_abandoned(
    factory: sessionmaker[Session],
) -> None:
    assert _claim(factory) == Claimed()
    assert _claim(factory, now=NOW + idempotency.ABANDONED_AFTER / 2) == InProgress()
    # The first request's server died: the claim is taken over.
    assert _claim(factory, now=NOW + idempotency.ABANDONED_AFTER) == Claimed()


def test_another_request_with_the_key_is_refused_served_or_not(
    factory: sessionmaker[Session],
) -> None:
    assert _claim(factory) == Claimed()
    assert _claim(factory, fingerprint="other") == KeyReused()
    _keep(factory)
    assert _claim(factory, fingerprint="other") == KeyReused()


def test_past_the_window_a_key_is_new_again_and_old_ones_are_swept(
    factory: sessionmaker[Session],
) -> None:
    assert _claim(factory) == Claimed()
    _keep(factory)
    assert _claim(factory, key="old") == Claimed()
    later = NOW + idempotency.WINDOW
    assert _claim(factory, fingerprint="new", now=later) == Claimed()
    assert _claim(factory, key="fresh", now=later) == Claimed()
    # "old" went with the sweep: a new request with it is served.
    assert _claim(factory, key="old", fingerprint="x", now=later) == Claimed()


def test_a_forgotten_claim_is_served_afresh(factory: sessionmaker[Session]) -> None:
    assert _claim(factory) == Claimed()
    idempotency.forget(session_factory=factory, api_key_id=API_KEY_ID, key="k")
    assert _claim(factory, fingerprint="other") == Claimed()


def test_a_kept_answer_is_never_forgotten(factory: sessionmaker[Session]) -> None:
    assert _claim(factory) == Claimed()
    _keep(factory)
    idempotency.forget(session_factory=factory, api_key_id=API_KEY_ID, key="k")
    assert isinstance(_claim(factory), Replay)


parts = st.tuples(st.sampled_from(["POST", "PATCH"]), st.text(max_size=5), st.binary(max_size=5))


@given(parts, st.binary(max_size=5), parts, st.binary(max_size=5))
def test_fingerprints_differ_when_requests_do(
    one: tuple[str, str, bytes], one_body: bytes, two: tuple[str, str, bytes], two_body: bytes
) -> None:
    def fingerprint(part: tuple[str, str, bytes], body: bytes) -> str:
        method, path, query = part
        return idempotency.request_fingerprint(method=method, path=path, query=query, body=body)

    same = (one, one_body) == (two, two_body)
    assert (fingerprint(one, one_body) == fingerprint(two, two_body)) == same


@pytest.mark.parametrize(
    ("key", "valid"),
    [("a", True), ("x" * 255, True), ("", False), ("x" * 256, False), ("a b", False), ("é", False)],
)
def test_keys_are_visible_ascii_up_to_255(key: str, valid: bool) -> None:
    assert idempotency.valid_key(key) is valid
