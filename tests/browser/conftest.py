"""Browser fixtures: Debian's Chromium driven by Playwright, and real emulator servers.

Browser tests are marked `browser` and run in CI; nothing is skipped when Chromium is
missing: that is a broken test machine, and the fixture says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.support.servers import CHROMIUM_ARGS, RunningServer, embedportal_process, free_port

CHROMIUM_EXECUTABLE = os.environ.get("EMBEDPORTAL_TEST_CHROMIUM", "/usr/bin/chromium")

EmulatorFactory = Callable[[Mapping[str, str]], RunningServer]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM_EXECUTABLE).is_file():
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM_EXECUTABLE}: install Debian's `chromium` package "
            "or point EMBEDPORTAL_TEST_CHROMIUM at a Chromium binary."
        )
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM_EXECUTABLE, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


class PageProblems:
    """Uncaught errors and Content-Security-Policy violations seen in a page and its frames."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.console: list[str] = []

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"{error.name}: {error.message}")

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)
        if "Content Security Policy" in message.text:
            self.errors.append(f"CSP violation: {message.text}")


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(chromium: Browser, page_problems: PageProblems) -> Iterator[Page]:
    """A page in a fresh browser context; the test fails on any uncaught page error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    new_page = context.new_page()
    new_page.on("pageerror", page_problems.on_page_error)
    new_page.on("console", page_problems.on_console)
    try:
        yield new_page
    finally:
        # A routed request still in flight when the test ends (the report polls its data) would
        # otherwise fail inside the next test's setup when its fetch finds the context gone.
        context.unroute_all(behavior="ignoreErrors")
        new_page.unroute_all(behavior="ignoreErrors")
        context.close()
    if page_problems.errors:
        pytest.fail("Errors in the page:\n" + "\n".join(page_problems.errors), pytrace=False)


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorFactory]:
    """Start (or reuse) an `embedportal emulator` subprocess for a set of env overrides.

    Servers are shared by every test that asks for the same overrides and stopped at the end
    of the session, so a module pays for each configuration once."""
    running: dict[tuple[tuple[str, str], ...], RunningServer] = {}
    with ExitStack() as stack:

        def start(env: Mapping[str, str]) -> RunningServer:
            key = tuple(sorted(env.items()))
            if key not in running:
                port = free_port()
                log_dir = tmp_path_factory.mktemp("emulator")
                running[key] = stack.enter_context(
                    embedportal_process(
                        ["emulator", "--port", str(port)],
                        port=port,
                        env=dict(env),
                        log_dir=log_dir,
                        health_path="/healthz",
                    )
                )
            return running[key]

        yield start


# Portal servers (`embedportal serve`) for the quick-start tests.
from tests.browser.portal_fixtures import (  # noqa: E402, F401
    portal,
    portal_on_powerbi_host,
    portal_with_short_tokens,
)
