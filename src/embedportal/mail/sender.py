"""The background sender: every few seconds, claim the due mails and hand each to the
transport, off the event loop (a worker thread: smtplib blocks)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from sqlalchemy.orm import Session, sessionmaker

from embedportal.db.session import session_scope
from embedportal.mail.outbox import claim_due, record_failure, record_sent
from embedportal.mail.transport import DeliveryError, Mail, Transport

logger = logging.getLogger("embedportal.mail")


class MailSender:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        transport: Transport,
        *,
        interval_seconds: float,
        max_attempts: int,
        holder: str | None = None,
    ) -> None:
        self._factory = session_factory
        self.transport = transport
        self._interval = interval_seconds
        self._max_attempts = max_attempts
        # Unique per process and sender: claims name who holds them.
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def deliver_due(self) -> int:
        """One pass (blocking): claim what is due, send it, record each outcome. Returns how
        many mails were sent."""
        with session_scope(self._factory) as session:
            claimed = [
                (
                    row.id,
                    Mail(
                        recipient=row.recipient,
                        subject=row.subject,
                        text_body=row.text_body,
                        html_body=row.html_body,
                        language=row.language,
                    ),
                )
                for row in claim_due(session=session, holder=self.holder)
            ]
        sent = 0
        for mail_id, mail in claimed:
            try:
                self.transport.send(mail)
            except DeliveryError as error:
                with session_scope(self._factory) as session:
                    state = record_failure(
                        session=session,
                        mail_id=mail_id,
                        holder=self.holder,
                        reason=error.reason,
                        permanent=error.permanent,
                        max_attempts=self._max_attempts,
                    )
                logger.warning("mail %s not sent (%s): %s", mail_id, state.value, error.reason)
                continue
            with session_scope(self._factory) as session:
                record_sent(
                    session=session, mail_id=mail_id, holder=self.holder, via=self.transport.name
                )
            sent += 1
        return sent

    async def run(self) -> None:
        """Until cancelled. A failed pass (the database down, say) is logged; the claims it
        made lapse and the next pass goes on."""
        while True:
            try:
                await asyncio.to_thread(self.deliver_due)
            except Exception:  # noqa: BLE001 - the next pass tries again; nothing is lost
                logger.warning("mail sender: pass failed", exc_info=True)
            await asyncio.sleep(self._interval)
