"""Access changes reach open viewers within seconds: after each change that can shrink (or
re-identify) a user's access, the `access` event goes to that user's push stream, and to no one
else's. Everything over real HTTP: uvicorn in a thread, viewers as `/api/events` streams, the
admin as form posts with a session cookie and its CSRF token."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.app import create_app
from embedportal.db.models import Group, ReportGrant, User
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE
from embedportal.emulator.tokens import unverified_claims
from embedportal.settings import Settings
from embedportal.web.push import PushEvent
from tests.support.portal import Grant, MakeUser, SyncedReports
from tests.support.threaded import serve_in_thread

SALES = "Sales Overview"
REGIONAL = "Regional Performance"
WAIT_SECONDS = 10.0


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@dataclass
class Browser:
    """A signed-in browser: its session cookie and the CSRF token pages give it."""

    base_url: str
    cookie: str
    csrf: str
    user_id: int

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            cookies={SESSION_COOKIE: self.cookie},
            headers={"X-CSRF-Token": self.csrf},
            timeout=WAIT_SECONDS,
        )

    def post(self, path: str, form: dict[str, str] | None = None) -> httpx.Response:
        with self.client() as client:
            return client.post(path, data=form or {}, follow_redirects=False)

    def token(self, report_id: str) -> httpx.Response:
        with self.client() as client:
            return client.post(f"/api/reports/{report_id}/token", json={"reason": "access-check"})


@dataclass
class Listener:
    """An open viewer's push stream, recording every event until the `end` marker."""

    browser: Browser
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        with httpx.stream(
            "GET",
            f"{self.browser.base_url}/api/events",
            cookies={SESSION_COOKIE: self.browser.cookie},
            timeout=30,
        ) as response:
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: ") and kind:
                    data = json.loads(line[len("data: ") :])
                    self.events.append((kind, data))
                    if data.get("marker") == "end":
                        return

    def saw(self, marker: str) -> bool:
        return any(data.get("marker") == marker for _kind, data in self.events)

    @property
    def access_events(self) -> int:
        return sum(1 for kind, _data in self.events if kind == "access")


@dataclass
class Portal:
    app: FastAPI
    base_url: str
    listeners: list[Listener] = field(default_factory=list)

    def browser(self, user: User) -> Browser:
        with session_scope(self.app.state.session_factory) as db:
            row = db.get(User, user.id)
            assert row is not None
            new = start_session(session=db, user=row)
            return Browser(self.base_url, new.cookie_value, new.record.csrf_token, user.id)

    def listen(self, user: User) -> Listener:
        listener = Listener(self.browser(user))
        listener.start()
        self.listeners.append(listener)
        return listener

    def _mark(self, marker: str, done: Callable[[Listener], bool]) -> None:
        """Broadcast a marker until every listener has it: events published before it have
        then arrived too (one subscriber's events keep their order)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not all(done(listener) for listener in self.listeners):
            assert time.monotonic() < deadline, f"marker {marker!r} did not reach every viewer"
            self.app.state.push_hub.publish(PushEvent(kind="policy", data={"marker": marker}))
            time.sleep(0.1)

    def ready(self) -> None:
        hub = self.app.state.push_hub
        # With Redis, a marker reaches local viewers even before the subscription is live (the
        # hub delivers locally meanwhile); events from another instance need the subscription.
        deadline = time.monotonic() + WAIT_SECONDS
        while hub.uses_redis and not hub.redis_live:
            assert time.monotonic() < deadline, "the Redis subscription did not come up"
            time.sleep(0.05)
        marker = uuid.uuid4().hex
        self._mark(marker, lambda listener: listener.saw(marker))

    def settle(self) -> None:
        """Every event published so far has reached every listener; the streams close."""
        self._mark(
            "end", lambda listener: listener.thread is None or not listener.thread.is_alive()
        )


@pytest.fixture
def portal(app: FastAPI) -> Iterator[Portal]:
    with serve_in_thread(app) as base_url:
        running = Portal(app, base_url)
        yield running
        if any(listener.thread and listener.thread.is_alive() for listener in running.listeners):
            running.settle()


@pytest.fixture
def admin(portal: Portal, make_user: MakeUser) -> Browser:
    return portal.browser(make_user("admin@example.com", role="admin"))


def _user_form(user: User, **changes: str) -> dict[str, str]:
    form = {
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "rls_username": user.rls_username or "",
        "rls_roles": ", ".join(user.rls_roles),
    }
    form.update(changes)
    return form


def _group_id(portal: Portal, name: str) -> int:
    with session_scope(portal.app.state.session_factory) as db:
        group = db.scalar(select(Group).where(Group.name == name))
        assert group is not None
        return group.id


def test_blocking_a_user_pushes_access_and_their_re_check_gets_401(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    viewer = make_user("viewer@example.com")
    bystander = make_user("bystander@example.com")
    grant(synced_reports[SALES], user=viewer)
    grant(synced_reports[SALES], user=bystander)
    viewer_stream, bystander_stream = portal.listen(viewer), portal.listen(bystander)
    assert viewer_stream.browser.token(synced_reports[SALES]).status_code == 200
    portal.ready()

    assert admin.post(f"/admin/users/{viewer.id}/block").status_code == 303

    portal.settle()
    assert viewer_stream.access_events == 1
    assert bystander_stream.access_events == 0
    # What the viewer does on `access`: ask again. The session is gone → 401 → "revoked".
    again = viewer_stream.browser.token(synced_reports[SALES])
    assert again.status_code == 401
    assert again.json()["code"] == "Unauthorized"
    assert bystander_stream.browser.token(synced_reports[SALES]).status_code == 200


def test_deleting_a_user_pushes_access_and_their_re_check_gets_401(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    viewer = make_user("viewer@example.com")
    bystander = make_user("bystander@example.com")
    grant(synced_reports[SALES], user=viewer)
    viewer_stream, bystander_stream = portal.listen(viewer), portal.listen(bystander)
    portal.ready()

    assert admin.post(f"/admin/users/{viewer.id}/delete").status_code == 303

    portal.settle()
    assert (viewer_stream.access_events, bystander_stream.access_events) == (1, 0)
    assert viewer_stream.browser.token(synced_reports[SALES]).status_code == 401


@pytest.mark.parametrize(
    ("fields", "changes", "pushed"),
    [
        pytest.param({"role": "admin"}, {"role": "viewer"}, True, id="demoted"),
        pytest.param({}, {"role": "admin"}, True, id="promoted"),
        pytest.param({}, {"rls_username": "north@example.com"}, True, id="rls-username"),
        pytest.param({}, {"rls_roles": "North"}, True, id="rls-roles"),
        # Without an RLS username the e-mail is the identity Power BI gets.
        pytest.param({}, {"email": "renamed@example.com"}, True, id="email"),
        pytest.param({}, {"name": "A new display name"}, False, id="name-only"),
    ],
)
def test_changing_a_user_pushes_access_when_access_or_identity_changes(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    fields: dict[str, object],
    changes: dict[str, str],
    pushed: bool,
) -> None:
    subject = make_user("subject@example.com", **fields)
    bystander = make_user("bystander@example.com")
    subject_stream, bystander_stream = portal.listen(subject), portal.listen(bystander)
    portal.ready()

    response = admin.post(f"/admin/users/{subject.id}", _user_form(subject, **changes))
    assert response.status_code == 303, response.text

    portal.settle()
    assert subject_stream.access_events == (1 if pushed else 0)
    assert bystander_stream.access_events == 0


def test_a_new_rls_identity_reaches_the_viewer_as_a_new_token(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    """The viewer re-asks on `access` and gets a token for the new identity, not the cached one."""
    viewer = make_user("manager@example.com", rls_username="north@example.com")
    grant(synced_reports[REGIONAL], user=viewer, roles=[REGION_MANAGER_ROLE])
    stream = portal.listen(viewer)
    before = stream.browser.token(synced_reports[REGIONAL])
    assert before.status_code == 200, before.text
    portal.ready()

    form = _user_form(viewer, rls_username="south@example.com")
    assert admin.post(f"/admin/users/{viewer.id}", form).status_code == 303

    portal.settle()
    assert stream.access_events == 1
    after = stream.browser.token(synced_reports[REGIONAL])
    assert after.status_code == 200, after.text
    assert after.json()["tokenId"] != before.json()["tokenId"]
    identities = unverified_claims(after.json()["token"])["identities"]
    assert [identity["username"] for identity in identities] == ["south@example.com"]


def test_removing_a_group_member_pushes_access_to_that_member_only(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    leaving = make_user("leaving@example.com")
    staying = make_user("staying@example.com")
    grant(synced_reports[SALES], group="Team", members=[leaving, staying])
    leaving_stream, staying_stream = portal.listen(leaving), portal.listen(staying)
    assert leaving_stream.browser.token(synced_reports[SALES]).status_code == 200
    portal.ready()

    group_id = _group_id(portal, "Team")
    response = admin.post(f"/admin/groups/{group_id}/members/{leaving.id}/remove")
    assert response.status_code == 303

    portal.settle()
    assert (leaving_stream.access_events, staying_stream.access_events) == (1, 0)
    assert leaving_stream.browser.token(synced_reports[SALES]).status_code == 403


def test_adding_a_group_member_pushes_access_to_that_member_only(
    portal: Portal, admin: Browser, make_user: MakeUser, grant: Grant
) -> None:
    """A group's grants may add RLS roles to a report the user already sees."""
    joining = make_user("joining@example.com")
    member = make_user("member@example.com")
    with session_scope(portal.app.state.session_factory) as db:
        db.add(Group(name="Team"))
    joining_stream, member_stream = portal.listen(joining), portal.listen(member)
    portal.ready()

    group_id = _group_id(portal, "Team")
    response = admin.post(f"/admin/groups/{group_id}/members", {"email": joining.email})
    assert response.status_code == 303

    portal.settle()
    assert (joining_stream.access_events, member_stream.access_events) == (1, 0)


def test_deleting_a_group_pushes_access_to_every_member(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    first = make_user("first@example.com")
    second = make_user("second@example.com")
    outsider = make_user("outsider@example.com")
    grant(synced_reports[SALES], group="Team", members=[first, second])
    grant(synced_reports[SALES], user=outsider)
    streams = [portal.listen(user) for user in (first, second, outsider)]
    portal.ready()

    assert admin.post(f"/admin/groups/{_group_id(portal, 'Team')}/delete").status_code == 303

    portal.settle()
    assert [stream.access_events for stream in streams] == [1, 1, 0]
    assert streams[0].browser.token(synced_reports[SALES]).status_code == 403
    assert streams[2].browser.token(synced_reports[SALES]).status_code == 200


def test_removing_a_group_grant_pushes_access_to_its_members(
    portal: Portal,
    admin: Browser,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    member = make_user("member@example.com")
    outsider = make_user("outsider@example.com")
    grant(synced_reports[SALES], group="Team", members=[member])
    member_stream, outsider_stream = portal.listen(member), portal.listen(outsider)
    portal.ready()

    with session_scope(portal.app.state.session_factory) as db:
        grant_id = db.scalar(
            select(ReportGrant.id).where(ReportGrant.group_id == _group_id(portal, "Team"))
        )
    report_id = synced_reports[SALES]
    response = admin.post(f"/admin/reports/{report_id}/grants/{grant_id}/delete")
    assert response.status_code == 303

    portal.settle()
    assert (member_stream.access_events, outsider_stream.access_events) == (1, 0)


def test_an_access_change_on_one_instance_reaches_a_viewer_on_another(
    redis_url: str, settings: Settings, make_user: MakeUser
) -> None:
    """Two portal instances on one database and one Redis: the admin's change is made on the
    first, the viewer's push stream is open on the second."""
    shared = settings.model_copy(update={"redis_url": redis_url})
    first, second = create_app(shared), create_app(shared)
    viewer = make_user("viewer@example.com")
    bystander = make_user("bystander@example.com")
    administrator = make_user("admin@example.com", role="admin")
    try:
        with serve_in_thread(first) as first_url, serve_in_thread(second) as second_url:
            on_second = Portal(second, second_url)
            viewer_stream, bystander_stream = on_second.listen(viewer), on_second.listen(bystander)
            on_second.ready()  # also waits for the second instance's Redis subscription
            admin = replace(on_second.browser(administrator), base_url=first_url)

            assert admin.post(f"/admin/users/{viewer.id}/block").status_code == 303

            # Publishing is asynchronous (it never blocks the request), so the second
            # instance's own end marker may overtake the first's event: wait for the event.
            deadline = time.monotonic() + WAIT_SECONDS
            while not viewer_stream.access_events:
                assert time.monotonic() < deadline, "the access event did not cross over"
                time.sleep(0.05)

            on_second.settle()
            assert (viewer_stream.access_events, bystander_stream.access_events) == (1, 0)
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()
