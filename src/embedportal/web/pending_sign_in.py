"""The half-signed-in state between a right password and its code (two-step sign-in).

It is a short-lived signed cookie, not a session: it names the user, where the sign-in leads,
and a fingerprint of the password hash it was earned with, and it opens nothing but the code
page. A changed password (or five minutes) makes it worthless. It is only ever a ticket to
*try* codes, and every try counts in the sign-in throttles (access/login.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from embedportal.db.models import User
from embedportal.settings import Settings

PENDING_SIGN_IN_COOKIE = "embedportal_two_step"
PENDING_SIGN_IN_LIFETIME = timedelta(minutes=5)
_PATH = "/login"


@dataclass(frozen=True)
class PendingSignIn:
    user_id: int
    next_url: str
    password_fingerprint: str

    def still_earned_by(self, user: User) -> bool:
        """The password it was earned with is still the user's."""
        return self.password_fingerprint == password_fingerprint(user)


def password_fingerprint(user: User) -> str:
    return hashlib.sha256(b"pending-sign-in\0" + user.password_hash.encode()).hexdigest()[:32]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="two-step-pending")


def set_pending_sign_in(
    response: Response, *, settings: Settings, user: User, next_url: str, secure: bool
) -> None:
    value = _serializer(settings).dumps(
        {"user": user.id, "next": next_url, "password": password_fingerprint(user)}
    )
    response.set_cookie(
        PENDING_SIGN_IN_COOKIE,
        value,
        max_age=int(PENDING_SIGN_IN_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure,
        path=_PATH,
    )


def pending_sign_in_of(request: Request, *, settings: Settings) -> PendingSignIn | None:
    """The pending sign-in the browser holds, if its signature is right and it is fresh."""
    raw = request.cookies.get(PENDING_SIGN_IN_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(settings).loads(
            raw, max_age=int(PENDING_SIGN_IN_LIFETIME.total_seconds())
        )
    except BadSignature:
        return None
    if not isinstance(value, dict):
        return None
    user_id, next_url, fingerprint = value.get("user"), value.get("next"), value.get("password")
    if not isinstance(user_id, int) or not isinstance(next_url, str):
        return None
    if not isinstance(fingerprint, str):
        return None
    return PendingSignIn(user_id=user_id, next_url=next_url, password_fingerprint=fingerprint)


def forget_pending_sign_in(response: Response) -> None:
    response.delete_cookie(PENDING_SIGN_IN_COOKIE, path=_PATH)
