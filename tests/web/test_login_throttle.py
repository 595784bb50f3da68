"""Sign-in over HTTP (issue #11, items 1 and 2): the race over a real server, a lock-out that
holds back only the guesser's address, X-Forwarded-For only from a trusted proxy, and the same
answer and time for unknown and known e-mails."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from embedportal.access import login as login_module
from embedportal.access import passwords
from embedportal.db.models import AuditEntry, LoginThrottle, User
from embedportal.db.session import session_scope
from tests.support.portal import DEFAULT_PASSWORD, MakeUser
from tests.support.threaded import serve_in_thread

PROXY = "10.0.0.2"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
_VOLATILE = re.compile(r'(name="csrf[-_]token" (?:content|value)=")[^"]*(")')


def _csrf(client: TestClient | httpx.Client) -> str:
    match = _CSRF_META.search(client.get("/login").text)
    assert match
    return match.group(1)


def _post(
    client: TestClient | httpx.Client,
    email: str,
    password: str,
    *,
    forwarded_for: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token or _csrf(client)},
        headers=headers,
        follow_redirects=False,
    )


@pytest.fixture
def behind_proxy(app: FastAPI) -> Iterator[TestClient]:
    """A browser whose requests reach the portal through the proxy at 10.0.0.2."""
    with TestClient(app, base_url="http://127.0.0.1", client=(PROXY, 50000)) as client:
        yield client


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "10.0.0.0/8"}])
def test_five_wrong_passwords_from_one_address_do_not_lock_the_owner_out(
    behind_proxy: TestClient, make_user: MakeUser
) -> None:
    """The reproduction: five wrong passwords for the administrator locked them out for 30
    minutes, the right password included. Now only the guesser's address waits."""
    make_user("admin@example.com", role="admin")
    answers = [
        _post(behind_proxy, "admin@example.com", f"guess-{n}", forwarded_for="203.0.113.66")
        for n in range(6)
    ]
    assert [answer.status_code for answer in answers] == [400, 400, 400, 400, 429, 429]
    assert int(answers[-1].headers["retry-after"]) > 0
    # The guesser, even with the right password now, waits...
    held = _post(behind_proxy, "admin@example.com", DEFAULT_PASSWORD, forwarded_for="203.0.113.66")
    assert held.status_code == 429
    # ...the owner at their desk does not.
    owner = _post(
        behind_proxy, "admin@example.com", DEFAULT_PASSWORD, forwarded_for="198.51.100.20"
    )
    assert owner.status_code == 303


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "10.0.0.0/8"}])
def test_a_forged_forwarded_for_from_a_client_is_not_believed(
    app: FastAPI, make_user: MakeUser
) -> None:
    """A client talking to the portal directly cannot claim to be someone new each time."""
    make_user("admin@example.com", role="admin")
    with TestClient(app, base_url="http://127.0.0.1", client=("198.51.100.99", 1)) as direct:
        statuses = [
            _post(direct, "admin@example.com", "guess", forwarded_for=f"192.0.2.{n}").status_code
            for n in range(6)
        ]
    assert statuses == [400, 400, 400, 400, 429, 429]
    with session_scope(app.state.session_factory) as db:
        addresses = set(db.scalars(select(LoginThrottle.address)))
    assert addresses == {"", "198.51.100.99"}


def test_without_trusted_proxies_the_forwarded_for_header_is_ignored(
    client: TestClient, make_user: MakeUser
) -> None:
    make_user("admin@example.com", role="admin")
    statuses = [
        _post(client, "admin@example.com", "guess", forwarded_for=f"192.0.2.{n}").status_code
        for n in range(5)
    ]
    assert statuses[-1] == 429


def _normalised(page: str) -> str:
    """The page without what differs from one request to the next (CSRF token, the minute)."""
    return re.sub(r"\b\d\d:\d\d\b", "HH:MM", _VOLATILE.sub(r"\1…\2", page))


@pytest.mark.parametrize("settings_overrides", [{"login_max_attempts": 3}])
def test_unknown_and_known_emails_get_the_same_answers(
    client: TestClient, make_user: MakeUser
) -> None:
    """The lock message appeared only for existing accounts, telling which exist."""
    make_user("north@example.com")
    seen: dict[str, list[tuple[int, str | None, str]]] = {}
    for email in ["north@example.com", "nobody@example.com"]:
        answers = []
        for _attempt in range(4):
            response = _post(client, email, "wrong-password")
            page = _normalised(response.text).replace(email, "EMAIL")
            answers.append((response.status_code, response.headers.get("retry-after"), page))
        seen[email] = answers
    known, unknown = seen["north@example.com"], seen["nobody@example.com"]
    assert [a[0] for a in known] == [a[0] for a in unknown] == [400, 400, 429, 429]
    for (k_status, k_retry, k_page), (u_status, u_retry, u_page) in zip(
        known, unknown, strict=True
    ):
        assert (k_status, k_page) == (u_status, u_page)
        # A second may tick between the two runs.
        assert (k_retry is None) == (u_retry is None)
        if k_retry and u_retry:
            assert abs(int(k_retry) - int(u_retry)) <= 2


@pytest.mark.parametrize("settings_overrides", [{"login_max_attempts": 100}])
def test_unknown_and_known_emails_cost_the_same_work(
    app: FastAPI, client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both cost one argon2 verification at the same parameters (a real user's hash, or the
    dummy made with the same hasher), so their time differs by noise only. Asserted as the work
    done, not as a measured time, which a busy machine would make flaky."""
    hasher = PasswordHasher(time_cost=3, memory_cost=32 * 1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", hasher)
    user = make_user("north@example.com")
    with session_scope(app.state.session_factory) as db:
        db.execute(
            update(User).where(User.id == user.id).values(password_hash=hasher.hash("x" * 12))
        )
    verified: list[str] = []
    real = login_module.verify_password

    def counting(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", counting)
    token = _csrf(client)
    for email in ("north@example.com", "nobody@example.com"):
        verified.clear()
        assert _post(client, email, "wrong-password", token=token).status_code == 400
        assert len(verified) == 1, email
        # The same argon2 parameters (the hash's "$argon2id$v=19$m=…,t=…,p=…" prefix).
        assert verified[0].rsplit("$", 2)[0] == hasher.hash("probe").rsplit("$", 2)[0], email


def test_thirty_parallel_sign_ins_over_http_the_right_one_21st_none_signs_in(
    app: FastAPI, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction over a real server: 29 wrong, the right one 21st, while the attempts
    that got a turn are still inside argon2."""
    user = make_user("admin@example.com", role="admin")
    hold = threading.Event()
    real = login_module.verify_password

    def held(password_hash: str, password: str) -> bool:
        if password_hash == user.password_hash:
            assert hold.wait(20)
        return real(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", held)
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as browser:
        token = _csrf(browser)

        def attempt(password: str) -> int:
            return _post(browser, user.email, password, token=token).status_code

        def reserved() -> int:
            with session_scope(app.state.session_factory) as db:
                counts = db.scalars(
                    select(LoginThrottle.failures).where(LoginThrottle.scope == "pair")
                )
                return max(counts, default=0)

        with ThreadPoolExecutor(max_workers=30) as pool:
            first = [pool.submit(attempt, f"wrong-{n}") for n in range(20)]
            deadline = time.monotonic() + 20
            while reserved() < 5:
                assert time.monotonic() < deadline, "the attempts were not counted in flight"
                time.sleep(0.02)
            right = pool.submit(attempt, DEFAULT_PASSWORD)
            rest = [pool.submit(attempt, f"late-{n}") for n in range(9)]
            right_status = right.result(timeout=20)
            hold.set()
            statuses = [future.result(timeout=20) for future in first + rest]
    assert right_status == 429
    assert 303 not in statuses
    assert sorted(statuses) == [400] * 4 + [429] * 25
    with session_scope(app.state.session_factory) as db:
        actions = list(db.scalars(select(AuditEntry.action)))
    assert "login.succeeded" not in actions


@pytest.mark.parametrize(
    "email",
    ["north\x00@example.com", "\x00", "a" * 5000 + "@example.com", "nórth@exämple.com", "²@x.y"],
)
def test_odd_emails_are_a_plain_refusal(
    client: TestClient, make_user: MakeUser, email: str
) -> None:
    """A NUL byte reached PostgreSQL and answered 500 (issue #11, item 4). A control character
    is now refused by the input guard before sign-in runs, the rest by sign-in itself: a 400
    with its reason either way, and nobody signed in."""
    make_user("north@example.com")
    response = _post(client, email, "wrong-password")
    assert response.status_code == 400
    if any(ord(char) < 0x20 for char in email):
        assert "control character" in response.text
    else:
        assert "The e-mail address or the password is not right." in response.text
