"""Helpers for the token keeper's browser tests (`test_token_keeper.py`).

- `RestartablePortal`: `embedportal serve` that a test can stop and start again on the same
  ports with the same database, for a real outage.
- `TokenCalls`: every call of the token API a page made, with its reason and answer.
- `install_probe`: a read-only recorder in the page. It wraps the open report's
  `setAccessToken` and `reload` to count them, and records every state the viewer showed.
- `explain`: on failure, adds the server log tail, the keeper snapshot, the probe and the token
  calls to the error, so a red run says what happened.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import FrameLocator, Locator, Page, Request, expect

from embedportal.emulator.demo import REGION_MANAGERS, sales_table
from tests.support.servers import RunningServer, embedportal_process, free_port

VIEWER = ("north@example.com", "embedportal-viewer")
ADMIN = ("admin@example.com", "embedportal-admin")
REPORT = "Sales Overview"
DEMO_GROUP = "Demo viewers"
REPORT_LOAD_TIMEOUT = 20_000
TOKEN_EXPIRED = "ClientError_TokenExpired"

TOKEN_PATH = re.compile(r"^/api/reports/[^/]+/token$")
SNAPSHOT = "() => window.embedportalViewers[0].keeper.snapshot()"


# --- servers ---------------------------------------------------------------------------------


class RestartablePortal:
    """`python -m embedportal serve` with the built-in emulator, on fixed free ports.

    `stop()` ends the process (the portal and its emulator go away together); `start()` brings
    a new one up on the same ports, with the same data folder and SQLite database, so sessions
    and grants survive as they would across a real restart. Each run logs to its own file."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.emulator_port = free_port()
        self.env = {
            "EMBEDPORTAL_ENVIRONMENT": "development",
            "EMBEDPORTAL_DEMO": "true",
            "EMBEDPORTAL_DATA_DIR": str(data_dir),
            "EMBEDPORTAL_DATABASE_URL": f"sqlite:///{(data_dir / 'embedportal.db').as_posix()}",
            "EMBEDPORTAL_REDIS_URL": "",
            **(env or {}),
        }
        self.server: RunningServer | None = None
        self._run: ExitStack | None = None
        self._logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._run is not None

    def start(self) -> None:
        assert self._run is None, "already running"
        log_dir = self.data_dir / f"run-{len(self._logs) + 1}"
        log_dir.mkdir()
        args = ["serve", "--port", str(self.port), "--emulator-port", str(self.emulator_port)]
        stack = ExitStack()
        self.server = stack.enter_context(
            embedportal_process(
                args, port=self.port, env=self.env, log_dir=log_dir, health_path="/healthz"
            )
        )
        self._logs.append(self.server.log_path)
        self._run = stack

    def stop(self) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            run.close()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for number, path in enumerate(self._logs, start=1):
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- portal run {number} ({path}) ---\n{tail}")
        return "\n".join(parts)


@contextmanager
def restartable_portal(
    data_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[RestartablePortal]:
    portal = RestartablePortal(data_dir, env)
    portal.start()
    try:
        yield portal
    finally:
        portal.stop()


def server_log_tail(server: RunningServer | RestartablePortal | None, lines: int = 40) -> str:
    if server is None:
        return "(no server)"
    if isinstance(server, RestartablePortal):
        return server.log_tail(lines)
    return "\n".join(server.log().splitlines()[-lines:])


# --- what the page did -----------------------------------------------------------------------


@dataclass
class TokenCall:
    reason: str | None
    status: int | str | None = None  # HTTP status; "failed" when no answer came


@dataclass
class TokenCalls:
    """The page's calls of `POST /api/reports/{id}/token` and whether the push channel is up."""

    calls: list[TokenCall] = field(default_factory=list)
    events_connected: int = 0
    _pending: dict[int, TokenCall] = field(default_factory=dict)

    @classmethod
    def record(cls, page: Page) -> TokenCalls:
        calls = cls()
        page.on("request", calls._on_request)
        page.on("response", calls._on_response)
        page.on("requestfailed", calls._on_failed)
        return calls

    @staticmethod
    def _is_token_call(request: Request) -> bool:
        return request.method == "POST" and bool(TOKEN_PATH.match(urlsplit(request.url).path))

    def _on_request(self, request: Request) -> None:
        if not self._is_token_call(request):
            return
        try:
            reason = json.loads(request.post_data or "{}").get("reason")
        except ValueError:
            reason = None
        call = TokenCall(reason=reason)
        self.calls.append(call)
        self._pending[id(request)] = call

    def _on_response(self, response: Any) -> None:
        request = response.request
        if urlsplit(request.url).path == "/api/events" and response.status == 200:
            self.events_connected += 1
        call = self._pending.pop(id(request), None)
        if call is not None:
            call.status = response.status

    def _on_failed(self, request: Request) -> None:
        call = self._pending.pop(id(request), None)
        if call is not None:
            call.status = "failed"

    def refreshes(self) -> list[TokenCall]:
        """Successful calls after the first token (`load`)."""
        return [c for c in self.calls if c.reason != "load" and c.status == 200]

    def with_reason(self, reason: str) -> list[TokenCall]:
        return [c for c in self.calls if c.reason == reason]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for call in self.calls:
            key = f"{call.reason}:{call.status}"
            counts[key] = counts.get(key, 0) + 1
        return f"{len(self.calls)} token calls {counts}; push connections: {self.events_connected}"


PROBE_JS = """
() => {
  const viewer = window.embedportalViewers[0];
  const report = viewer.report;
  const probe = {states: [viewer.slot.dataset.state], setAccessToken: [], reloads: 0,
                 rendered: 0, errors: [], marker: Math.random()};
  window.keeperProbe = probe;
  new MutationObserver(() => {
    const state = viewer.slot.dataset.state;
    if (probe.states[probe.states.length - 1] !== state) probe.states.push(state);
  }).observe(viewer.slot, {attributes: true, attributeFilter: ['data-state']});
  const setAccessToken = report.setAccessToken.bind(report);
  report.setAccessToken = (token) => {
    const call = {ok: null};
    probe.setAccessToken.push(call);
    return Promise.resolve(setAccessToken(token)).then(
      (value) => { call.ok = true; return value; },
      (error) => { call.ok = false; throw error; });
  };
  const reload = report.reload.bind(report);
  report.reload = () => { probe.reloads += 1; return reload(); };
  report.on('rendered', () => { probe.rendered += 1; });
  report.on('error', (event) => { probe.errors.push(event.detail?.message ?? null); });
  return probe.marker;
}
"""


def install_probe(page: Page) -> float:
    """Start recording in the open viewer. Returns a marker that is lost if the page reloads."""
    return float(page.evaluate(PROBE_JS))


def probe(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("() => window.keeperProbe"))


def snapshot(page: Page) -> dict[str, Any]:
    return dict(page.evaluate(SNAPSHOT))


def wait_until(
    page: Page, check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll a Python-side condition. Sleeps with `page.wait_for_timeout`, which lets Playwright
    deliver the page's events to the recorders (a plain `time.sleep` would not) and does not
    depend on the page's clock, which may be paused."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        page.wait_for_timeout(interval * 1000)


def page_state(page: Page) -> str:
    """Keeper snapshot and probe, for failure messages; never raises."""
    parts = []
    for label, script in (
        ("keeper", SNAPSHOT),
        ("probe", "() => window.keeperProbe ?? null"),
        ("viewer", "() => window.embedportalViewers?.[0]?.slot.dataset.state ?? null"),
        ("lastError", "() => String(window.embedportalViewers?.[0]?.lastError ?? '')"),
    ):
        try:
            parts.append(f"{label}: {json.dumps(page.evaluate(script), default=str)}")
        except PlaywrightError as error:
            parts.append(f"{label}: unavailable ({error.message.splitlines()[0]})")
    return "\n".join(parts)


@contextmanager
def explain(
    page: Page,
    server: RunningServer | RestartablePortal | None,
    calls: TokenCalls | None = None,
) -> Iterator[None]:
    """Add the page's keeper state, the token calls and the server log to any failure."""
    try:
        yield
    except Exception as problem:
        note = [
            "==== token keeper diagnostics ====",
            page_state(page),
            calls.summary() if calls is not None else "(token calls not recorded)",
            "==== server log tail ====",
            server_log_tail(server),
        ]
        problem.add_note("\n".join(note))
        raise


# --- the portal as a person uses it ----------------------------------------------------------


def money(value: float) -> str:
    return f"${round(value):,}"


def total_revenue(region: str | None = None) -> str:
    rows = sales_table().rows
    return money(sum(float(row[5]) for row in rows if region is None or row[1] == region))


def viewer_region() -> str:
    return REGION_MANAGERS[VIEWER[0]]


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def report_frame(page: Page) -> FrameLocator:
    return page.frame_locator(".report-frame iframe")


def card(page: Page, title: str = "Total revenue") -> Locator:
    return report_frame(page).locator(".card", has_text=title).get_by_test_id("card-value")


def expired_overlay(page: Page) -> Locator:
    return page.locator('[data-overlay="expired"]')


def open_report(page: Page, name: str = REPORT) -> None:
    """From the reports list: open the report, wait for its numbers and start the probe."""
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(card(page)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    page.wait_for_function("() => window.embedportalViewers?.[0]?.keeper")


VISIBILITY_JS = """
(state) => {
  if (!('testVisibility' in window)) {
    Object.defineProperty(document, 'visibilityState',
                          {configurable: true, get: () => window.testVisibility});
    Object.defineProperty(document, 'hidden',
                          {configurable: true, get: () => window.testVisibility === 'hidden'});
  }
  window.testVisibility = state;
  document.dispatchEvent(new Event('visibilitychange'));
}
"""


def set_visibility(page: Page, state: str) -> None:
    """Make the page's document report `state` ("hidden"/"visible") and tell its listeners, as
    switching tabs does (timer throttling of real background tabs is not emulated)."""
    page.evaluate(VISIBILITY_JS, state)
    assert page.evaluate("() => document.visibilityState") == state


def refresh_data(page: Page, timeout: float = REPORT_LOAD_TIMEOUT) -> None:
    """Re-query every visual with the token the report holds now (`report.refresh()`) and wait
    for that render pass to finish."""
    before = probe(page)["rendered"]
    page.evaluate("() => window.embedportalViewers[0].report.refresh()")
    page.wait_for_function(
        f"() => window.keeperProbe.rendered > {before}", timeout=timeout, polling=100
    )


def assert_visuals_load(page: Page) -> None:
    """A data refresh now draws numbers, and nothing in the frame says the token expired;
    then a slicer click (a new query with the current token) filters the card."""
    refresh_data(page)
    expect(card(page)).to_have_text(total_revenue())
    expect(report_frame(page).get_by_text(TOKEN_EXPIRED)).to_have_count(0)
    expect(report_frame(page).locator("body")).not_to_contain_text(TOKEN_EXPIRED)
    report_frame(page).get_by_label(viewer_region()).check()
    expect(card(page)).to_have_text(total_revenue(viewer_region()), timeout=REPORT_LOAD_TIMEOUT)
    expect(report_frame(page).locator("body")).not_to_contain_text(TOKEN_EXPIRED)


# --- simulated time --------------------------------------------------------------------------


def idle_simulated(
    page: Page,
    seconds: float,
    *,
    chunk_seconds: float = 600,
    after_step: Callable[[], None] | None = None,
) -> int:
    """Let `seconds` of simulated time pass in the page (`page.clock` must be installed), in
    steps of at most `chunk_seconds`, firing every timer on the way. Real time moves too.

    A step never runs more than a second past the moment the keeper's next refresh falls due:
    the refresh is a real HTTP round trip, and running the clock on while it is in flight would
    fire its 30-second step timeout long before any real network could answer (in real life a
    30 s timer does not outrun a local request). So after each step the helper waits, in real
    time, for a refresh in flight to finish. Returns the number of steps."""
    target = float(page.evaluate("() => performance.now()")) + seconds * 1000
    steps = 0
    while True:
        left = target - float(page.evaluate("() => performance.now()"))
        if left <= 0:
            return steps
        snap = snapshot(page)
        due = snap["remainingSeconds"] - snap["effectiveMarginSeconds"]
        every = snap["effectiveTimings"]["refreshEverySeconds"]
        if every:
            due = min(due, every - snap["ageSeconds"])
        step = min(chunk_seconds * 1000, left, max(due + 1, 1) * 1000)
        page.clock.run_for(max(1, round(step)))
        steps += 1
        wait_until(
            page, lambda: not snapshot(page)["inFlight"], timeout=15, what="the refresh in flight"
        )
        if after_step is not None:
            after_step()
