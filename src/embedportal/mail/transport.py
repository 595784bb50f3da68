"""Handing one mail to an SMTP server, or to the log when none is configured. Blocking calls
(smtplib): the sender runs them in a worker thread, never on the event loop."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from embedportal.settings import Settings

logger = logging.getLogger("embedportal.mail")


@dataclass(frozen=True)
class Mail:
    """What a transport needs of an outbox row."""

    recipient: str
    subject: str
    text_body: str
    html_body: str
    language: str


class DeliveryError(Exception):
    """A failed attempt; ``permanent`` when trying again cannot help (the server refused the
    recipient or the message for good)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Transport(Protocol):
    # Recorded on the outbox row: "smtp", or "log" when the mail only went to the log.
    name: str

    def send(self, mail: Mail) -> None: ...


def build_message(mail: Mail, *, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> ") or None)
    # Automatic mail: no out-of-office replies to it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    # After the bodies: setting content drops the Content-* headers set before it.
    message["Content-Language"] = mail.language.replace("_", "-")
    return message


class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        assert settings.mail_smtp_host and settings.mail_from
        self._settings = settings
        self._host = settings.mail_smtp_host
        self._sender = settings.mail_from

    def send(self, mail: Mail) -> None:
        settings = self._settings
        message = build_message(mail, sender=self._sender)
        timeout = settings.mail_smtp_timeout_seconds
        try:
            if settings.mail_smtp_security == "ssl":
                context = ssl.create_default_context()
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self._host, settings.mail_smtp_port, timeout=timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self._host, settings.mail_smtp_port, timeout=timeout)
            with smtp:
                if settings.mail_smtp_security == "starttls":
                    # Refuses (SMTPNotSupportedError) rather than go on in clear text.
                    smtp.starttls(context=ssl.create_default_context())
                if settings.mail_smtp_user:
                    password = settings.mail_smtp_password
                    smtp.login(
                        settings.mail_smtp_user, password.get_secret_value() if password else ""
                    )
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            permanent = all(500 <= code < 600 for code in codes)
            raise DeliveryError(_describe(error), permanent=permanent) from error
        except smtplib.SMTPResponseException as error:
            permanent = 500 <= error.smtp_code < 600 and not isinstance(
                error, smtplib.SMTPAuthenticationError
            )
            raise DeliveryError(_describe(error), permanent=permanent) from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(_describe(error)) from error


def _describe(error: BaseException) -> str:
    """The reason Admin → Outbox shows: the kind of error and the server's words."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = [
            f"{code} {reply.decode(errors='replace')}" for code, reply in error.recipients.values()
        ]
        return f"recipient refused: {'; '.join(answers)}"[:500]
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return f"{type(error).__name__}: {error.smtp_code} {text}"[:500]
    return f"{type(error).__name__}: {error}"[:500]


class LogTransport:
    """Development without an SMTP server: the mail is written to the log, so the person trying
    the portal can follow an invitation link (Admin → Outbox shows it too)."""

    name = "log"

    def send(self, mail: Mail) -> None:
        logger.info(
            "mail (no SMTP server configured) to %s: %s\n%s",
            mail.recipient,
            mail.subject,
            mail.text_body,
        )


class NoTransport:
    """Production without an SMTP server: every attempt fails, so mails wait in the outbox,
    visible in Admin → Outbox, until a server is configured."""

    name = "none"

    def send(self, mail: Mail) -> None:
        raise DeliveryError("no SMTP server is configured (EMBEDPORTAL_MAIL_SMTP_HOST)")


def transport_for(settings: Settings) -> Transport:
    if settings.mail_smtp_host:
        return SmtpTransport(settings)
    if settings.environment in ("development", "test"):
        return LogTransport()
    return NoTransport()
