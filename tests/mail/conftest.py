from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.smtp import SmtpServer, running_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, object]:
    # The tests drive the sender themselves.
    return {**smtp_server.settings(), "mail_sender": False}
