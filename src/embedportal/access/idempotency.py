"""Idempotent changes through the integration API: an `Idempotency-Key` makes a retry safe.

An application that sends a change and loses the answer (a time-out, a dropped connection)
cannot tell whether it was done. Sent again with the same `Idempotency-Key`, from the same API
key, within `WINDOW`, the request is not done again: the first answer comes back as it was.
The same key with another request (method, path, query or body) is refused, and so is a retry
while the first is still being served. Only successful answers are kept: a refusal or a failure
is not an outcome worth repeating, so a retry of one is served afresh.

Records belong to the API key that made them (its id, known once it authenticated), so the
answer is replayed only to a caller whose key still authenticates (web/idempotency.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from embedportal.db.models import IdempotentRequest
from embedportal.db.session import session_scope

WINDOW = timedelta(hours=24)
# A first request that has not finished in this time died with its server: a retry serves it.
ABANDONED_AFTER = timedelta(minutes=1)
MAX_KEY_LENGTH = 255
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Claimed:
    """No earlier answer: this request is served, and its answer kept."""


@dataclass(frozen=True)
class Replay:
    """The first request's answer, to be sent again as it was."""

    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class InProgress:
    """The first request with this key is still being served."""


@dataclass(frozen=True)
class KeyReused:
    """This key was sent with another request."""


Claim = Claimed | Replay | InProgress | KeyReused


def request_fingerprint(*, method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        # Length-prefixed, so no two different requests run together into one fingerprint.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def valid_key(key: str) -> bool:
    """Printable ASCII without spaces, as UUIDs and random tokens are, up to 255 characters."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all("!" <= char <= "~" for char in key)


def claim(
    *,
    session_factory: sessionmaker[Session],
    api_key_id: str,
    key: str,
    fingerprint: str,
    now: datetime,
) -> Claim:
    """Decide what a request with ``key`` gets, recording it as being served when it is new."""
    for _attempt in range(2):
        with session_scope(session_factory) as session:
            row = _find(session, api_key_id, key)
            if row is None or row.created_at <= now - WINDOW:
                # Rows past the window (this key's too) go as new ones come: no sweeper
                # needed, and the index on created_at keeps it one short delete.
                session.execute(
                    delete(IdempotentRequest).where(IdempotentRequest.created_at <= now - WINDOW)
                )
                session.add(
                    IdempotentRequest(
                        api_key_id=api_key_id,
                        idempotency_key=key,
                        fingerprint=fingerprint,
                        created_at=now,
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    # Another request with this key claimed it a moment ago: look again.
                    session.rollback()
                    continue
                return Claimed()
            if row.fingerprint != fingerprint:
                return KeyReused()
            if row.status_code is not None:
                return Replay(row.status_code, row.content_type, row.body)
            if row.created_at <= now - ABANDONED_AFTER:
                row.created_at = now
                session.commit()
                return Claimed()
            return InProgress()
    return InProgress()


def keep_answer(
    *,
    session_factory: sessionmaker[Session],
    api_key_id: str,
    key: str,
    status_code: int,
    content_type: str,
    body: bytes,
) -> None:
    with session_scope(session_factory) as session:
        row = _find(session, api_key_id, key)
        if row is None:
            return
        row.status_code = status_code
        row.content_type = content_type[:200]
        row.body = body


def forget(*, session_factory: sessionmaker[Session], api_key_id: str, key: str) -> None:
    """Drop a claim whose request was refused or failed, so a retry is served afresh."""
    with session_scope(session_factory) as session:
        session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.api_key_id == api_key_id,
                IdempotentRequest.idempotency_key == key,
                IdempotentRequest.status_code.is_(None),
            )
        )


def _find(session: Session, api_key_id: str, key: str) -> IdempotentRequest | None:
    return session.scalars(
        select(IdempotentRequest).where(
            IdempotentRequest.api_key_id == api_key_id,
            IdempotentRequest.idempotency_key == key,
        )
    ).one_or_none()
