"""API keys: how an application of the organization's calls the integration API (`/api/v1`).

A key's secret reads ``ep_<key id>_<random>``: the id finds the row, the random part (32 bytes)
is the secret. It is shown once, when the key is made; only its sha256 is stored, and the
comparison is in constant time. A key holds scopes (what it may do), may expire, and is revoked
rather than deleted, so the audit trail keeps naming it. Its last use is written at most once a
minute (`LastUseMemo`), never once per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.audit import record, through_api_key
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import ApiKey, User
from embedportal.db.session import session_scope
from embedportal.i18n import N_, _

SECRET_PREFIX = "ep"
MAX_NAME_LENGTH = 200
# Longer than any key this module makes; anything longer is no key and is not hashed.
MAX_SECRET_LENGTH = 120
LAST_USE_RESOLUTION = timedelta(minutes=1)

# Every scope a key may hold, with the words Admin → API keys shows for it.
SCOPES: dict[str, str] = {
    "users:read": N_("Read users"),
    "users:write": N_("Create, change, block and delete users"),
    "groups:read": N_("Read groups and their members"),
    "groups:write": N_("Create and delete groups, add and remove members"),
    "grants:read": N_("Read who may open each report"),
    "grants:write": N_("Grant reports and remove grants"),
    "rls:write": N_("Set RLS usernames and roles (of users and of grants)"),
    "reports:read": N_("Read the report catalogue"),
    "audit:read": N_("Read the audit log"),
    "sso:issue": N_("Issue single sign-on links for users"),
}


class ApiKeyState:
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def state_of(key: ApiKey, *, now: datetime) -> str:
    if key.revoked_at is not None:
        return ApiKeyState.REVOKED
    if key.expires_at is not None and key.expires_at <= now:
        return ApiKeyState.EXPIRED
    return ApiKeyState.ACTIVE


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    # Shown once, on the page that follows the creation; never stored.
    secret: str


def parse_scopes(scopes: Sequence[str]) -> list[str]:
    """The scopes asked for, known ones only, in the order SCOPES lists them."""
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise UserInputError(
            _("There is no scope called “%(scope)s”.", scope=unknown[0][:40]), field="scopes"
        )
    if not scopes:
        raise UserInputError(_("Choose at least one scope."), field="scopes")
    return [scope for scope in SCOPES if scope in scopes]


def expiry_of_day(value: str, *, zone: ZoneInfo) -> datetime | None:
    """The end of the day ``value`` (YYYY-MM-DD) in ``zone``, when a key made to expire then
    stops working; None for no expiry (an empty value)."""
    text = value.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 9998:
        raise UserInputError(
            _("Give the expiry as a date (YYYY-MM-DD), or leave it empty."), field="expires_on"
        )
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)


def create_api_key(
    *,
    session: Session,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None = None,
    expires_on: str = "",
    zone: ZoneInfo | None = None,
    actor: User | None,
    now: datetime | None = None,
) -> CreatedKey:
    """Make a key; the secret in the answer is the only copy there will ever be. It expires at
    ``expires_at``, or at the end of the day ``expires_on`` (a form's YYYY-MM-DD) in ``zone``,
    or never."""
    now = now or utcnow()
    errors: dict[str, str] = {}
    if expires_on.strip():
        try:
            expires_at = expiry_of_day(expires_on, zone=zone or ZoneInfo("UTC"))
        except UserInputError as error:
            errors.update(error.errors)
    clean_name = " ".join(name.split())
    if not clean_name:
        errors["name"] = _("Give the key a name, such as the application that will use it.")
    elif len(clean_name) > MAX_NAME_LENGTH:
        errors["name"] = _(
            "The name must have at most %(count)d characters.", count=MAX_NAME_LENGTH
        )
    chosen: list[str] = []
    try:
        chosen = parse_scopes(scopes)
    except UserInputError as error:
        errors.update(error.errors)
    if expires_at is not None and expires_at <= now and "expires_on" not in errors:
        errors["expires_on"] = _("The expiry date must be in the future.")
    if errors:
        raise UserInputError(errors=errors)
    key_id = secrets.token_hex(6)
    secret = f"{SECRET_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=key_id,
        name=clean_name,
        secret_hash=hash_secret(secret),
        scopes=chosen,
        created_by_user_id=actor.id if actor is not None else None,
        created_by_email=actor.email if actor is not None else "",
        created_at=now,
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    record(
        session=session,
        actor=actor,
        action="api_key.created",
        target_type="api_key",
        target_id=key.id,
        detail={
            "name": key.name,
            "scopes": list(chosen),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return CreatedKey(key=key, secret=secret)


def revoke_api_key(
    *, session: Session, key: ApiKey, actor: User | None, now: datetime | None = None
) -> bool:
    """Revoke the key at once; False when it already was (nothing is recorded then)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now or utcnow()
    session.flush()
    record(
        session=session,
        actor=actor,
        action="api_key.revoked",
        target_type="api_key",
        target_id=key.id,
        detail={"name": key.name},
    )
    return True


def list_api_keys(*, session: Session) -> list[ApiKey]:
    """Every key, newest first (revoked ones too: the audit trail names them)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)))


class ApiKeyRefused(Exception):
    """Why a presented key does not authenticate: ``code`` is the API's machine code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ApiCaller:
    """A key that authenticated, detached from any database session."""

    key_id: str
    name: str
    scopes: frozenset[str]


def _key_id_of(secret: str) -> str | None:
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != SECRET_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def authenticate(*, session: Session, secret: str, now: datetime | None = None) -> ApiCaller:
    """The key ``secret`` belongs to, or ApiKeyRefused: InvalidApiKey for anything that is not
    a key's secret (unknown id and wrong secret alike), then ApiKeyRevoked or ApiKeyExpired
    (said only to a caller who holds the real secret)."""
    now = now or utcnow()
    invalid = ApiKeyRefused(
        "InvalidApiKey", _("The API key is not valid. Check that it was copied whole.")
    )
    key_id = _key_id_of(secret) if len(secret) <= MAX_SECRET_LENGTH else None
    key = session.get(ApiKey, key_id) if key_id is not None else None
    # Hashed and compared even when no key has that id, so timing says nothing about ids.
    expected = key.secret_hash if key is not None else hash_secret("")
    if not hmac.compare_digest(expected, hash_secret(secret)) or key is None:
        raise invalid
    state = state_of(key, now=now)
    if state == ApiKeyState.REVOKED:
        raise ApiKeyRefused(
            "ApiKeyRevoked",
            _("This API key was revoked. Ask an administrator for a new one."),
        )
    if state == ApiKeyState.EXPIRED:
        raise ApiKeyRefused(
            "ApiKeyExpired",
            _("This API key has expired. Ask an administrator for a new one."),
        )
    return ApiCaller(key_id=key.id, name=key.name, scopes=frozenset(key.scopes or ()))


class LastUseMemo:
    """When each key's last use was last written, in memory: a key called a thousand times a
    minute costs one write a minute. Each instance keeps its own (the column is then at most a
    minute behind the busiest instance)."""

    def __init__(self, resolution: timedelta = LAST_USE_RESOLUTION) -> None:
        self._resolution = resolution
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def due(self, key_id: str, now: datetime) -> bool:
        """True (and noted) when ``key_id``'s last use should be written now."""
        with self._lock:
            then = self._written.get(key_id)
            if then is not None and now - then < self._resolution:
                return False
            self._written[key_id] = now
            return True


def write_last_use(*, session_factory: sessionmaker[Session], key_id: str, now: datetime) -> None:
    """Store the key's last use (called when `LastUseMemo.due` says so)."""
    with session_scope(session_factory) as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


class ReadMemo:
    """Which reads have been audited today, in memory: a change through the API is audited each
    time (its service records it); a read, once a day for each key and call (`GET
    /api/v1/users`), so the audit log says who reads what without a row per poll. Each
    instance keeps its own (a fleet records a read once per instance and day at most)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._day: date | None = None
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def due(self, key_id: str, call: str, day: date) -> bool:
        """True (and noted) the first time ``key_id`` makes ``call`` on ``day`` (UTC)."""
        with self._lock:
            if day != self._day:
                self._day = day
                self._seen.clear()
            if (key_id, call) in self._seen:
                return False
            if len(self._seen) >= self._max_entries:
                self._seen.clear()  # a flood of keys and calls: audit again rather than grow
            self._seen.add((key_id, call))
            return True


def record_read(*, session_factory: sessionmaker[Session], caller: ApiCaller, call: str) -> None:
    """Audit the key's first ``call`` of the day (called when `ReadMemo.due` says so)."""
    with session_scope(session_factory) as session, through_api_key(caller.name):
        record(
            session=session,
            actor=None,
            action="api_key.read",
            target_type="api_key",
            target_id=caller.key_id,
            detail={"call": call},
        )
