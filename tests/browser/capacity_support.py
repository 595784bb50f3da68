"""Helpers for the capacity viewer's browser tests (`test_capacity_viewer.py`).

- `PortalData`: the test's hand on the portal's SQLite database, for what an administrator
  would set on pages other worktrees build (a capacity's idle pause and starting message, the
  timed refresh, a user's "May turn on the capacity"), and `create_user` through the CLI.
- `CapacityArm`: the built-in emulator's capacity seen (and switched) over ARM, as Azure would.
- `watch_page`: an init script that marks the document (a page reload loses the marker) and
  records every state each report slot showed, from the first moment.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from embedportal.emulator.settings import EmulatorSettings
from tests.support.servers import REPO_ROOT

RUNNING = "Succeeded"
PAUSED = "Paused"


@dataclass
class PortalData:
    """The portal's database (SQLite) and the environment its CLI needs."""

    path: Path
    env: Mapping[str, str]

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def scalar(self, sql: str, *params: Any) -> Any:
        with self.connect() as db:
            row = db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: str, *params: Any) -> None:
        with self.connect() as db:
            db.execute(sql, params)

    def capacity_of(self, report_id: str) -> str:
        capacity_id = self.scalar("SELECT capacity_id FROM reports WHERE id = ?", report_id)
        assert capacity_id, f"report {report_id} has no capacity"
        return str(capacity_id)

    def set_capacity(self, capacity_id: str, **values: object) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.execute(
            f"UPDATE capacities SET {assignments} WHERE id = ?",  # noqa: S608 - test's own names
            *values.values(),
            capacity_id,
        )

    def set_refresh_every_minutes(self, minutes: int | None) -> None:
        self.execute("UPDATE organization SET refresh_every_minutes = ?", minutes)

    def create_user(self, email: str, password: str, *, group: str, **flags: bool) -> None:
        """`embedportal users create`, then the user's flags and a group membership."""
        subprocess.run(
            [sys.executable, "-m", "embedportal", "users", "create"]
            + ["--email", email, "--password-stdin"],
            input=password + "\n",
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
            timeout=60,
        )
        for name, value in flags.items():
            self.execute(
                f"UPDATE users SET {name} = ? WHERE email = ?",  # noqa: S608 - test's own names
                value,
                email,
            )
        self.execute(
            "INSERT INTO group_memberships (group_id, user_id) "
            "SELECT groups.id, users.id FROM groups, users "
            "WHERE groups.name = ? AND users.email = ?",
            group,
            email,
        )


class CapacityArm:
    """The emulator's (dedicated) demo capacity over ARM, with the client credentials the
    portal uses."""

    def __init__(self, emulator_url: str) -> None:
        self.settings = EmulatorSettings()
        self.http = httpx.Client(base_url=emulator_url, timeout=10)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            answer = self.http.post(
                f"/{self.settings.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                    "scope": "https://management.azure.com/.default",
                },
            )
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def state(self) -> str:
        answer = self.http.get(
            self.settings.capacity_resource_id,
            params={"api-version": "2021-01-01"},
            headers=self._headers(),
        )
        answer.raise_for_status()
        return str(answer.json()["properties"]["state"])

    def act(self, action: str) -> None:
        """`suspend` or `resume`, as an administrator would in Azure."""
        answer = self.http.post(
            f"{self.settings.capacity_resource_id}/{action}",
            params={"api-version": "2021-01-01"},
            headers=self._headers(),
        )
        assert answer.status_code in (200, 202), answer.text

    def wait_for(self, state: str, *, timeout: float, page: Page | None = None) -> float:
        """Wait until ARM says `state`; the seconds it took. With a page, waits through
        `page.wait_for_timeout`, so the page's recorders keep receiving events."""
        started = time.monotonic()
        while (current := self.state()) != state:
            assert time.monotonic() - started < timeout, (
                f"the capacity stayed {current}, never {state}, for {timeout} s"
            )
            if page is not None:
                page.wait_for_timeout(500)
            else:
                time.sleep(0.5)
        return time.monotonic() - started


# An init script: runs in every document before its own scripts (the top window only).
WATCH_JS = """
(() => {
  if (window.top !== window) return;
  window.__marker = Math.random();
  window.__slotStates = {};
  window.__eventsUrls = [];
  const OriginalEventSource = window.EventSource;
  window.EventSource = class extends OriginalEventSource {
    constructor(url, options) { super(url, options); window.__eventsUrls.push(String(url)); }
  };
  document.addEventListener('DOMContentLoaded', () => {
    for (const slot of document.querySelectorAll('[data-report-slot]')) {
      const states = [slot.dataset.state ?? 'initial'];
      window.__slotStates[slot.id] = states;
      new MutationObserver(() => {
        const state = slot.dataset.state;
        if (states[states.length - 1] !== state) states.push(state);
      }).observe(slot, {attributes: true, attributeFilter: ['data-state']});
    }
  });
})();
"""

RELOAD_PROBE_JS = """
() => {
  window.__reloads = window.embedportalViewers.map(() => 0);
  window.embedportalViewers.forEach((viewer, index) => {
    const reload = viewer.report.reload.bind(viewer.report);
    viewer.report.reload = () => { window.__reloads[index] += 1; return reload(); };
  });
}
"""


def watch_page(page: Page) -> None:
    """Record, from the first document on, each slot's states and the push channel's URL."""
    page.add_init_script(WATCH_JS)


def marker(page: Page) -> float:
    return float(page.evaluate("() => window.__marker"))


def slot_states(page: Page) -> dict[str, list[str]]:
    return dict(page.evaluate("() => window.__slotStates"))


def events_urls(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__eventsUrls"))


def count_reloads(page: Page) -> None:
    """Count each embedded report's `reload()` from now on (see `reloads`)."""
    page.evaluate(RELOAD_PROBE_JS)


def reloads(page: Page) -> list[int]:
    return list(page.evaluate("() => window.__reloads"))


def keeper_states(page: Page) -> list[str | None]:
    return list(
        page.evaluate(
            "() => window.embedportalViewers.map((v) => v.keeper?.snapshot().state ?? null)"
        )
    )
