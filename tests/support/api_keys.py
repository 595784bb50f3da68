"""API keys for tests of the integration API (/api/v1): made through the service, as Admin →
API keys makes them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fastapi import FastAPI

from embedportal.access.api_keys import SCOPES, create_api_key, revoke_api_key
from embedportal.db.session import session_scope

ALL_SCOPES = tuple(SCOPES)


def make_api_key(
    app: FastAPI,
    scopes: Iterable[str] = ALL_SCOPES,
    *,
    name: str = "Host app",
    expires_at: datetime | None = None,
    revoked: bool = False,
    now: datetime | None = None,
) -> str:
    """A key's secret (``ep_<id>_<random>``)."""
    with session_scope(app.state.session_factory) as db:
        created = create_api_key(
            session=db,
            name=name,
            scopes=list(scopes),
            expires_at=expires_at,
            actor=None,
            now=now,
        )
        if revoked:
            revoke_api_key(session=db, key=created.key, actor=None)
        return created.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
