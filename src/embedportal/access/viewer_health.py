"""Viewer health: what open viewers report about their embed tokens, kept per day, and how many
tokens the portal handed out against how many it had Power BI mint.

Viewers send telemetry in batches (`POST /api/telemetry`); each batch adds to one counter per
(UTC day, report, event type, reason). The token side is counted the same way: the token API
notes every token it hands out in a :class:`TokenTally` (in memory, no I/O on the request), which
adds them to the day's `tokenShared` / `tokenMinted` counters every few seconds and writes one
`token.issued` audit entry for the first token a user gets for a report each day. (Before that,
every token was an audit entry; such entries are still counted.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, Report, User, ViewerEventCount
from embedportal.db.periodic import flush_periodically
from embedportal.db.session import session_scope
from embedportal.i18n import _
from embedportal.metrics import REFRESH_REASONS, VIEWER_EVENT_TYPES

logger = logging.getLogger("embedportal.viewer_health")

# Reasons kept as given: why a token was refreshed, and how a viewer noticed its token died
# ("clock", "wake", "expired-error"). Anything else is counted as "other", so a misbehaving
# client cannot fill the table with made-up reasons.
KNOWN_REASONS: tuple[str, ...] = (*REFRESH_REASONS, "clock")
OTHER_REASON = "other"
# The token API's own counters (not sent by viewers): tokens handed out from the shared cache,
# and tokens freshly minted (one GenerateToken call each).
TOKEN_SHARED = "tokenShared"
TOKEN_MINTED = "tokenMinted"
TOKEN_FLUSH_SECONDS = 5.0
# Why a token was asked for: a refresh reason, or opening the report.
TOKEN_REASONS: tuple[str, ...] = (*KNOWN_REASONS, "load")


@dataclass(frozen=True)
class ReportedEvent:
    """One event as a viewer reported it (already checked for shape by the API)."""

    event_type: str
    reason: str | None = None
    report_id: str | None = None


def stored_reason(reason: str | None) -> str:
    if not reason:
        return ""
    return reason if reason in KNOWN_REASONS else OTHER_REASON


def record_viewer_events(
    *, session: Session, events: Sequence[ReportedEvent], day: date | None = None
) -> None:
    """Add a batch of viewer events to the day's counters (the caller commits).

    Report ids the catalogue does not know are counted without a report. Each counter is an
    INSERT … ON CONFLICT DO UPDATE on its unique key, so batches arriving at the same moment
    (on any number of portal instances) all count, on SQLite and PostgreSQL alike.
    """
    unknown_types = {event.event_type for event in events} - set(VIEWER_EVENT_TYPES)
    if unknown_types:
        raise ValueError(f"unknown viewer event types: {sorted(unknown_types)}")
    day = day or utcnow().date()
    named = {event.report_id for event in events if event.report_id}
    known = set(session.scalars(select(Report.id).where(Report.id.in_(named)))) if named else set()
    counts: Counter[tuple[str | None, str, str]] = Counter(
        (
            event.report_id if event.report_id in known else None,
            event.event_type,
            stored_reason(event.reason),
        )
        for event in events
    )
    # Always the same order, so concurrent batches lock their rows without deadlocking.
    for (report_id, event_type, reason), count in sorted(
        counts.items(), key=lambda item: (item[0][0] or "", item[0][1], item[0][2])
    ):
        _add(session, day, report_id, event_type, reason, count)


def _add(
    session: Session, day: date, report_id: str | None, event_type: str, reason: str, count: int
) -> None:
    counter = ViewerEventCount
    dialect = session.get_bind().dialect.name
    # The portal runs on these two; both speak INSERT … ON CONFLICT (…) [WHERE …] DO UPDATE.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(counter).values(
        day=day, report_id=report_id, event_type=event_type, reason=reason, count=count
    )
    raised = {"count": counter.count + statement.excluded["count"]}
    if report_id is None:
        # NULLs never conflict in the full key: the partial unique index holds these counters.
        upsert = statement.on_conflict_do_update(
            index_elements=["day", "event_type", "reason"],
            index_where=counter.report_id.is_(None),
            set_=raised,
        )
    else:
        upsert = statement.on_conflict_do_update(
            index_elements=["day", "report_id", "event_type", "reason"], set_=raised
        )
    session.execute(upsert)


# --- reading it back ---------------------------------------------------------------------------


@dataclass
class Figures:
    """Counts over some days (one day, one report, or everything shown)."""

    refreshes: Counter[str] = field(default_factory=Counter)  # reason → token refreshes
    failures: int = 0
    expiries: int = 0
    recoveries: int = 0
    handed_out: int = 0  # tokens the token API answered with
    minted: int = 0  # of those, freshly minted: one GenerateToken call each

    @property
    def refresh_total(self) -> int:
        return sum(self.refreshes.values())

    @property
    def shared(self) -> int:
        return self.handed_out - self.minted

    @property
    def is_empty(self) -> bool:
        return not (
            self.refresh_total
            or self.failures
            or self.expiries
            or self.recoveries
            or self.handed_out
        )

    def add_event(self, event_type: str, reason: str, count: int) -> None:
        if event_type == "refreshed":
            self.refreshes[reason] += count
        elif event_type == "refreshFailed":
            self.failures += count
        elif event_type == "expired":
            self.expiries += count
        elif event_type == "recovered":
            self.recoveries += count
        elif event_type in (TOKEN_SHARED, TOKEN_MINTED):
            self.add_tokens(shared=event_type == TOKEN_SHARED, count=count)

    def add_tokens(self, *, shared: bool, count: int) -> None:
        self.handed_out += count
        if not shared:
            self.minted += count


@dataclass
class DayRow:
    day: date
    hours: float  # hours of the day gone by (24 for a past day): the per-hour figure's basis
    figures: Figures = field(default_factory=Figures)

    @property
    def minted_per_hour(self) -> float:
        return self.figures.minted / self.hours if self.hours else 0.0


@dataclass
class ReportRow:
    report_id: str | None  # None: viewers that named no report the portal knows
    name: str | None  # None: the report is no longer in the catalogue
    figures: Figures = field(default_factory=Figures)


@dataclass
class ViewerHealth:
    first_day: date
    last_day: date
    days: list[DayRow]  # newest first, every day of the range, empty ones too
    reports: list[ReportRow]  # most refreshed first
    totals: Figures
    reasons: list[str]  # the refresh reasons that occur, in a stable order

    @property
    def is_empty(self) -> bool:
        return self.totals.is_empty


def _reason_order(reason: str) -> tuple[int, str]:
    if reason in KNOWN_REASONS:
        return KNOWN_REASONS.index(reason), reason
    return len(KNOWN_REASONS) + (reason == ""), reason


def reason_label(reason: str) -> str:
    """A person's words for a refresh reason."""
    labels = {
        "margin": _("Margin (before expiry)"),
        "interaction": _("Interaction"),
        "timed": _("Timed (“Refresh token every”)"),
        "wake": _("Wake-up (sleep, hidden tab)"),
        "expired-error": _("Expired, told by the report"),
        "manual": _("Manual"),
        "recovery": _("Recovery after expiry"),
        "access-check": _("Access check"),
        "policy": _("Policy change"),
        "capacity": _("Capacity went off"),
        "clock": _("Expired on the clock"),
        OTHER_REASON: _("Other"),
        "": _("Not given"),
    }
    return labels.get(reason, reason)


def _utc_day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, as the database computes it."""
    if session.get_bind().dialect.name == "postgresql":
        # date() of a timestamptz follows the connection's time zone; pin it to UTC.
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite: timestamps are stored as UTC text


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def viewer_health(
    *, session: Session, first_day: date, last_day: date, now: datetime | None = None
) -> ViewerHealth:
    """Everything the Viewer health page shows for the UTC days first_day..last_day."""
    now = now or utcnow()
    today = now.astimezone(UTC).date()
    days: dict[date, DayRow] = {}
    day = last_day
    while day >= first_day:
        if day < today:
            hours = 24.0
        elif day == today:
            midnight = datetime.combine(today, time(), UTC)
            hours = max((now - midnight).total_seconds() / 3600, 1.0)
        else:
            hours = 0.0
        days[day] = DayRow(day=day, hours=hours)
        day -= timedelta(days=1)
    totals = Figures()
    reports: dict[str | None, ReportRow] = {}

    def report_row(report_id: str | None) -> ReportRow:
        if report_id not in reports:
            reports[report_id] = ReportRow(report_id=report_id, name=None)
        return reports[report_id]

    count_sum = func.sum(ViewerEventCount.count)
    event_rows = session.execute(
        select(
            ViewerEventCount.day,
            ViewerEventCount.report_id,
            ViewerEventCount.event_type,
            ViewerEventCount.reason,
            count_sum,
        )
        .where(ViewerEventCount.day >= first_day, ViewerEventCount.day <= last_day)
        .group_by(
            ViewerEventCount.day,
            ViewerEventCount.report_id,
            ViewerEventCount.event_type,
            ViewerEventCount.reason,
        )
    )
    for row_day, report_id, event_type, reason, count in event_rows:
        amount = int(count or 0)
        for figures in (days[_as_date(row_day)].figures, report_row(report_id).figures, totals):
            figures.add_event(event_type, reason, amount)

    issued_day = _utc_day(session, AuditEntry.at)
    shared = AuditEntry.detail["shared"].as_boolean()
    token_rows = session.execute(
        select(issued_day, AuditEntry.target_id, shared, func.count())
        .where(
            AuditEntry.action == "token.issued",
            # Entries the tally writes (first of the day) are already in its counters.
            AuditEntry.detail["firstToday"].as_boolean().is_(None),
            AuditEntry.at >= datetime.combine(first_day, time(), UTC),
            AuditEntry.at < datetime.combine(last_day + timedelta(days=1), time(), UTC),
        )
        .group_by(issued_day, AuditEntry.target_id, shared)
    )
    for row_day, report_id, was_shared, count in token_rows:
        target = days.get(_as_date(row_day))
        if target is None:  # a moment on the range's edge, rounded by the database
            continue
        # An entry that does not say it was shared is counted as minted: the figure that
        # matters (GenerateToken calls) is better over- than under-stated.
        for figures in (target.figures, report_row(report_id or None).figures, totals):
            figures.add_tokens(shared=was_shared is True, count=int(count))

    ids = [report_id for report_id in reports if report_id is not None]
    if ids:
        names = {
            str(report_id): str(name)
            for report_id, name in session.execute(
                select(Report.id, Report.name).where(Report.id.in_(ids))
            )
        }
        for report_id, row in reports.items():
            if report_id is not None:
                row.name = names.get(report_id)
    ordered_reports = sorted(
        reports.values(),
        key=lambda row: (
            -row.figures.refresh_total,
            -row.figures.handed_out,
            row.report_id is None,
            (row.name or row.report_id or "").lower(),
        ),
    )
    return ViewerHealth(
        first_day=first_day,
        last_day=last_day,
        days=list(days.values()),
        reports=ordered_reports,
        totals=totals,
        reasons=sorted(totals.refreshes, key=_reason_order),
    )


# --- open now: the viewers connected to this process ---------------------------------------------

# How long the last token handed to a person for a report is remembered: longer than any embed
# token lives (Power BI's never outlive the hour of the Entra token that minted them).
LAST_TOKEN_MEMORY = timedelta(hours=2)
# The remembered tokens are pruned of old ones once there are this many.
LAST_TOKEN_PRUNE_AT = 1000


@dataclass(frozen=True)
class OpenStream:
    """One open push-channel stream: a viewer page (one report, or a TV screen's several)."""

    user_id: int
    user_email: str
    report_ids: tuple[str, ...]
    since: datetime


@dataclass(frozen=True)
class LastToken:
    handed_out_at: datetime
    expiration: datetime | None


def _parse_moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# With Redis, each process shares what it sees this often, and a share outlives it this long:
# an instance that stopped drops out of "open now" within that time.
SHARE_SECONDS = 10.0
SHARE_TTL_SECONDS = 35
SHARE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Watchers:
    """Open streams and their people's last tokens, of every instance that answered."""

    streams: list[OpenStream]
    tokens: dict[tuple[int, str], LastToken]
    instances: int  # how many processes' viewers these are
    shared: bool  # read through Redis (else this process alone)


class OpenViewers:
    """Who is watching now, as this process sees it: its open push-channel streams (the viewer
    pages connected to it) and the last token it handed each person for each report. In memory,
    per process; with Redis (``redis_url``) every process shares its own every few seconds
    (``run``), and ``gather`` reads them all, so any instance can list every viewer."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        redis_url: str | None = None,
        key_prefix: str = "embedportal",
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[int, OpenStream] = {}
        self._tokens: dict[tuple[int, str], LastToken] = {}
        self._ids = itertools.count(1)
        self.instance = f"{socket.gethostname()} · {os.getpid()}"
        self._redis_url = redis_url
        self._key_prefix = f"{key_prefix}:open-now:"

    # --- sharing through Redis ---

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(
            self._redis_url or "",
            socket_timeout=SHARE_TIMEOUT_SECONDS,
            socket_connect_timeout=SHARE_TIMEOUT_SECONDS,
        )

    def _own_share(self) -> str:
        streams = self.streams()
        pairs = {(s.user_id, r) for s in streams for r in s.report_ids}
        tokens = {}
        for user_id, report_id in pairs:
            token = self.last_token(user_id, report_id)
            if token is not None:
                tokens[f"{user_id} {report_id}"] = [
                    token.handed_out_at.isoformat(),
                    token.expiration.isoformat() if token.expiration else None,
                ]
        return json.dumps(
            {
                "streams": [
                    [s.user_id, s.user_email, list(s.report_ids), s.since.isoformat()]
                    for s in streams
                ],
                "tokens": tokens,
            }
        )

    def share(self) -> None:
        """Write this process's viewers to Redis (they expire unless shared again)."""
        if not self._redis_url:
            return
        client = self._redis()
        try:
            client.set(self._key_prefix + self.instance, self._own_share(), ex=SHARE_TTL_SECONDS)
        finally:
            client.close()

    def gather(self) -> Watchers:
        """Every instance's viewers through Redis; this process's alone without Redis, or
        when Redis does not answer."""
        local = Watchers(self.streams(), self._fresh_tokens(), instances=1, shared=False)
        if not self._redis_url:
            return local
        try:
            self.share()
            client = self._redis()
            try:
                keys = sorted(client.scan_iter(match=self._key_prefix + "*", count=100))
                values = client.mget(keys) if keys else []
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - Redis down: this instance's own list still answers
            logger.warning("open now: Redis did not answer; listing this instance only")
            return local
        streams: list[OpenStream] = []
        tokens: dict[tuple[int, str], LastToken] = {}
        for raw in values:
            if raw is None:
                continue
            try:
                share = json.loads(raw)
                for user_id, email, report_ids, since in share["streams"]:
                    moment = _parse_moment(str(since))
                    if moment is not None:
                        streams.append(
                            OpenStream(
                                int(user_id), str(email), tuple(map(str, report_ids)), moment
                            )
                        )
                for pair, (handed_out, expiration) in share["tokens"].items():
                    user_id, _sep, report_id = str(pair).partition(" ")
                    at = _parse_moment(str(handed_out))
                    if at is not None:
                        tokens[(int(user_id), report_id)] = LastToken(
                            at, _parse_moment(str(expiration)) if expiration else None
                        )
            except (ValueError, KeyError, TypeError):
                continue  # one instance's unreadable share does not hide the others
        return Watchers(streams, tokens, instances=len(keys), shared=True)

    async def run(self, *, interval_seconds: float = SHARE_SECONDS) -> None:
        """With Redis, share this process's viewers every ``interval_seconds`` until cancelled."""
        if not self._redis_url:
            return
        failing = False
        while True:
            try:
                await asyncio.to_thread(self.share)
                failing = False
            except Exception as error:  # noqa: BLE001 - Redis down: retried at the next turn
                if not failing:
                    logger.warning("open now: not shared through Redis (%s)", type(error).__name__)
                failing = True
            await asyncio.sleep(interval_seconds)

    def _fresh_tokens(self) -> dict[tuple[int, str], LastToken]:
        now = self._clock()
        with self._lock:
            return {
                key: token
                for key, token in self._tokens.items()
                if now - token.handed_out_at < LAST_TOKEN_MEMORY
            }

    @contextmanager
    def watching(
        self, *, user_id: int, user_email: str, report_ids: Sequence[str]
    ) -> Iterator[OpenStream]:
        """Count a stream as open while the block runs."""
        stream = OpenStream(user_id, user_email, tuple(dict.fromkeys(report_ids)), self._clock())
        with self._lock:
            key = next(self._ids)
            self._streams[key] = stream
        try:
            yield stream
        finally:
            with self._lock:
                self._streams.pop(key, None)

    def note_token(self, *, user_id: int, report_id: str, expiration: str) -> None:
        now = self._clock()
        with self._lock:
            self._tokens[(user_id, report_id)] = LastToken(now, _parse_moment(expiration))
            if len(self._tokens) >= LAST_TOKEN_PRUNE_AT:
                self._tokens = {
                    key: token
                    for key, token in self._tokens.items()
                    if now - token.handed_out_at < LAST_TOKEN_MEMORY
                }

    def streams(self) -> list[OpenStream]:
        with self._lock:
            return list(self._streams.values())

    def last_token(self, user_id: int, report_id: str) -> LastToken | None:
        with self._lock:
            token = self._tokens.get((user_id, report_id))
        if token is None or self._clock() - token.handed_out_at >= LAST_TOKEN_MEMORY:
            return None
        return token


@dataclass(frozen=True)
class OpenNowRow:
    """A person with a report open: since when, and the token the portal last gave them for it."""

    user_id: int
    user_email: str
    report_id: str
    report_name: str
    since: datetime
    watching_seconds: float
    token_age_seconds: float | None  # None: no token handed out by this process lately
    token_left_seconds: float | None  # None: unknown; negative: expired


def open_now(
    *,
    session: Session,
    open_viewers: OpenViewers,
    now: datetime | None = None,
    watchers: Watchers | None = None,
) -> list[OpenNowRow]:
    """One row per open report per stream, reports the catalogue knows only (a page may name
    any id; the token API is what refuses the others), longest watching first."""
    now = now or utcnow()
    watchers = open_viewers.gather() if watchers is None else watchers
    streams = watchers.streams
    ids = {report_id for stream in streams for report_id in stream.report_ids}
    names = (
        {
            str(report_id): str(name)
            for report_id, name in session.execute(
                select(Report.id, Report.name).where(Report.id.in_(ids))
            )
        }
        if ids
        else {}
    )
    rows = []
    for stream in streams:
        for report_id in stream.report_ids:
            if report_id not in names:
                continue
            token = watchers.tokens.get((stream.user_id, report_id))
            rows.append(
                OpenNowRow(
                    user_id=stream.user_id,
                    user_email=stream.user_email,
                    report_id=report_id,
                    report_name=names[report_id],
                    since=stream.since,
                    watching_seconds=max((now - stream.since).total_seconds(), 0.0),
                    token_age_seconds=(
                        max((now - token.handed_out_at).total_seconds(), 0.0) if token else None
                    ),
                    token_left_seconds=(
                        (token.expiration - now).total_seconds()
                        if token and token.expiration
                        else None
                    ),
                )
            )
    return sorted(rows, key=lambda row: (row.since, row.user_email, row.report_name.lower()))


def duration_words(seconds: float) -> str:
    """A person's words for a span: "under a minute", "12 min", "1 h 05 min"."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return _("under a minute")
    if minutes < 60:
        return _("%(minutes)s min", minutes=minutes)
    return _("%(hours)s h %(minutes)02d min", hours=minutes // 60, minutes=minutes % 60)


# --- the token API's tally ---------------------------------------------------------------------


@dataclass(frozen=True)
class _FirstToken:
    """What the audit entry for a user's first token of the day for a report says."""

    at: datetime
    user_id: int
    user_email: str
    report_id: str
    token_id: str
    shared: bool
    expiration: str
    reason: str


class TokenTally:
    """Tokens handed out, counted in memory (``note``: any thread, no I/O) and written by
    ``flush`` in one transaction: the day's counters, and an audit entry for each user's first
    token of the day for a report. The "first" is remembered per process, so a restart or a
    second instance may write one more entry for the same day, never one per token."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
        open_viewers: OpenViewers | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        # Who is watching now (Admin → Viewer health): the streams and each person's last token.
        self.open_viewers = open_viewers or OpenViewers(clock=clock)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[date, str, str, str]] = Counter()
        self._firsts: list[_FirstToken] = []
        self._seen_day: date | None = None
        self._seen: set[tuple[int, str]] = set()

    def note(
        self,
        *,
        user_id: int,
        user_email: str,
        report_id: str,
        token_id: str,
        shared: bool,
        expiration: str,
        reason: str,
    ) -> None:
        now = self._clock()
        day = now.astimezone(UTC).date()
        kind = TOKEN_SHARED if shared else TOKEN_MINTED
        self.open_viewers.note_token(user_id=user_id, report_id=report_id, expiration=expiration)
        with self._lock:
            stored = reason if reason in TOKEN_REASONS else OTHER_REASON
            self._counts[(day, report_id, kind, stored)] += 1
            if self._seen_day != day:
                self._seen_day, self._seen = day, set()
            if (user_id, report_id) in self._seen:
                return
            self._seen.add((user_id, report_id))
            self._firsts.append(
                _FirstToken(
                    now, user_id, user_email, report_id, token_id, shared, expiration, reason
                )
            )

    def note_events(self, events: Sequence[ReportedEvent]) -> None:
        """Viewer telemetry (refreshes, failures, expiry screens, recoveries), counted like
        tokens: in memory, written with the next ``flush`` (the telemetry endpoint is a hot
        path and writes nothing itself)."""
        unknown_types = {event.event_type for event in events} - set(VIEWER_EVENT_TYPES)
        if unknown_types:
            raise ValueError(f"unknown viewer event types: {sorted(unknown_types)}")
        day = self._clock().astimezone(UTC).date()
        with self._lock:
            for event in events:
                # "" is no report id: flush counts it without a report, like an unknown one.
                key = (day, event.report_id or "", event.event_type, stored_reason(event.reason))
                self._counts[key] += 1

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def flush(self) -> int:
        """Write what was noted; the number of tokens written. On a database error it stays
        noted and goes with the next flush."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            firsts, self._firsts = self._firsts, []
        if not counts and not firsts:
            return 0
        try:
            with session_scope(self._session_factory) as session:
                known = set(
                    session.scalars(
                        select(Report.id).where(Report.id.in_({key[1] for key in counts}))
                    )
                )
                # A user removed meanwhile keeps their entry, without the link to them.
                users = set(
                    session.scalars(
                        select(User.id).where(User.id.in_({first.user_id for first in firsts}))
                    )
                )
                for (day, report_id, kind, reason), count in sorted(counts.items()):
                    _add(
                        session, day, report_id if report_id in known else None, kind, reason, count
                    )
                session.add_all(
                    AuditEntry(
                        at=first.at,
                        actor_user_id=first.user_id if first.user_id in users else None,
                        actor_email=first.user_email,
                        action="token.issued",
                        target_type="report",
                        target_id=first.report_id,
                        detail={
                            "tokenId": first.token_id,
                            "shared": first.shared,
                            "expiration": first.expiration,
                            "reason": first.reason,
                            "firstToday": True,
                        },
                    )
                    for first in firsts
                )
        except Exception:
            with self._lock:
                self._counts.update(counts)
                self._firsts[:0] = firsts
            raise
        return sum(counts.values())

    async def run(self, *, interval_seconds: float = TOKEN_FLUSH_SECONDS) -> None:
        """Flush every ``interval_seconds`` until cancelled, and once more on the way out."""
        await flush_periodically(self.flush, interval_seconds=interval_seconds, name="token tally")
