"""The outbox against a real SMTP server: delivery, retries while the server is down, and one
sender per mail however many instances claim at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from embedportal.db.base import utcnow
from embedportal.db.models import MailState, OutboxMail
from embedportal.db.session import session_scope
from embedportal.mail import messages
from embedportal.mail.messages import MailBrand
from embedportal.mail.outbox import claim_due, enqueue, recent_mails
from embedportal.mail.sender import MailSender
from embedportal.mail.transport import LogTransport, NoTransport, SmtpTransport, transport_for
from embedportal.settings import Settings
from tests.support.smtp import SmtpServer, html_of, text_of

LINK = "http://127.0.0.1/password/set/token"


def _queue(app: FastAPI, recipient: str = "ana@example.com") -> int:
    mail = messages.password_reset(
        language="en", brand=MailBrand(name="Acme"), name="Ana", link=LINK, minutes=60
    )
    with session_scope(app.state.session_factory) as db:
        return enqueue(session=db, recipient=recipient, mail=mail).id


def _row(app: FastAPI, mail_id: int) -> OutboxMail:
    with session_scope(app.state.session_factory) as db:
        row = db.get(OutboxMail, mail_id)
        assert row is not None
        return row


def _sender(app: FastAPI, settings: Settings, holder: str = "one") -> MailSender:
    return MailSender(
        app.state.session_factory,
        transport_for(settings),
        interval_seconds=1,
        max_attempts=settings.mail_max_attempts,
        holder=holder,
    )


def test_a_queued_mail_reaches_the_smtp_server_with_text_and_html(
    app: FastAPI, settings: Settings, smtp_server: SmtpServer
) -> None:
    mail_id = _queue(app)
    assert _sender(app, settings).deliver_due() == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ana@example.com"
    assert message["From"] == "Reports <reports@example.com>"
    assert message["Subject"] == "Set a new password for Acme"
    assert message["Auto-Submitted"] == "auto-generated"
    assert LINK in text_of(message)
    assert f'href="{LINK}"' in html_of(message)
    row = _row(app, mail_id)
    assert row.state == MailState.SENT
    assert row.delivered_to == "smtp"
    # The link is no longer readable in the database once the mail has left.
    assert row.text_body == row.html_body == ""
    # A second pass finds nothing to send.
    assert _sender(app, settings).deliver_due() == 0
    assert len(smtp_server.messages) == 1


def test_while_the_server_is_down_the_mail_waits_and_is_retried_after_it_is_back(
    app: FastAPI, settings: Settings, smtp_server: SmtpServer
) -> None:
    mail_id = _queue(app)
    smtp_server.stop()
    sender = _sender(app, settings)
    assert sender.deliver_due() == 0
    row = _row(app, mail_id)
    assert row.state == MailState.PENDING
    assert row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert row.claimed_by is None
    # Not yet due: nothing is tried.
    assert sender.deliver_due() == 0
    assert _row(app, mail_id).attempts == 1

    smtp_server.start()
    with session_scope(app.state.session_factory) as db:
        db.execute(update(OutboxMail).values(next_attempt_at=utcnow()))
    assert sender.deliver_due() == 1
    smtp_server.wait_for(1)
    row = _row(app, mail_id)
    assert row.state == MailState.SENT
    assert row.attempts == 2
    assert row.last_error == ""
    assert len(smtp_server.messages) == 1


def test_after_its_last_attempt_a_mail_is_marked_failed_with_the_reason(
    app: FastAPI, settings: Settings, smtp_server: SmtpServer
) -> None:
    mail_id = _queue(app)
    smtp_server.stop()
    sender = MailSender(
        app.state.session_factory,
        transport_for(settings),
        interval_seconds=1,
        max_attempts=2,
    )
    for _attempt in range(2):
        with session_scope(app.state.session_factory) as db:
            db.execute(update(OutboxMail).values(next_attempt_at=utcnow()))
        sender.deliver_due()
    row = _row(app, mail_id)
    assert row.state == MailState.FAILED
    assert row.attempts == 2
    assert row.last_error
    with session_scope(app.state.session_factory) as db:
        page = recent_mails(session=db)
    assert (page.pending, page.failed) == (0, 1)


def test_two_senders_send_each_mail_once(
    app: FastAPI, settings: Settings, smtp_server: SmtpServer
) -> None:
    for number in range(6):
        _queue(app, recipient=f"user{number}@example.com")
    senders = [_sender(app, settings, holder=name) for name in ("a", "b")]
    threads = [threading.Thread(target=sender.deliver_due) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages_got = smtp_server.wait_for(6)
    time.sleep(0.2)
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(
        f"user{n}@example.com" for n in range(6)
    )
    assert len(messages_got) == 6
    with session_scope(app.state.session_factory) as db:
        states = set(db.scalars(select(OutboxMail.state)))
    assert states == {MailState.SENT}


def test_of_two_claims_at_once_one_wins(app: FastAPI) -> None:
    """The first claim holds its transaction open while a second instance claims: that one
    gets nothing (PostgreSQL skips the locked row; SQLite's conditional update, run once the
    first commits, finds the row claimed)."""
    mail_id = _queue(app)
    first = app.state.session_factory()
    try:
        won = claim_due(session=first, holder="first")
        assert [row.id for row in won] == [mail_id]
        second_got: list[list[int]] = []

        def second_claim() -> None:
            with session_scope(app.state.session_factory) as db:
                second_got.append([row.id for row in claim_due(session=db, holder="second")])

        thread = threading.Thread(target=second_claim)
        thread.start()
        time.sleep(0.3)
        first.commit()
        thread.join(timeout=30)
        assert second_got == [[]]
    finally:
        first.close()
    assert _row(app, mail_id).claimed_by == "first"


def test_a_lapsed_claim_is_claimed_again(app: FastAPI) -> None:
    """A sender that died holding a claim does not keep the mail from going out."""
    mail_id = _queue(app)
    with session_scope(app.state.session_factory) as db:
        claim_due(session=db, holder="dead", lease=timedelta(seconds=-1))
    with session_scope(app.state.session_factory) as db:
        assert [row.id for row in claim_due(session=db, holder="alive")] == [mail_id]


def test_the_transport_follows_the_settings(settings: Settings) -> None:
    assert isinstance(transport_for(settings), SmtpTransport)
    unconfigured = settings.model_copy(update={"mail_smtp_host": None})
    assert isinstance(transport_for(unconfigured), LogTransport)
    production = unconfigured.model_copy(update={"environment": "production"})
    assert isinstance(transport_for(production), NoTransport)


def test_without_a_server_in_development_the_mail_goes_to_the_log_and_keeps_its_text(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    mail_id = _queue(app)
    sender = MailSender(
        app.state.session_factory, LogTransport(), interval_seconds=1, max_attempts=3
    )
    with caplog.at_level(logging.INFO, logger="embedportal.mail"):
        assert sender.deliver_due() == 1
    assert "Set a new password for Acme" in caplog.text
    row = _row(app, mail_id)
    assert (row.state, row.delivered_to) == (MailState.SENT, "log")
    assert LINK in row.text_body
