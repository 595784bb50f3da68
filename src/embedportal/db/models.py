"""The portal's tables. Power BI's own objects are referred to by their Power BI ids."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from embedportal.db.base import Base, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=Role.VIEWER,
    )
    is_blocked: Mapped[bool] = mapped_column(default=False)
    # The identity sent to Power BI for row-level security (EffectiveIdentity.username).
    rls_username: Mapped[str | None] = mapped_column(String(256), default=None)
    rls_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    may_start_capacity: Mapped[bool] = mapped_column(default=False)
    keeps_capacity_on: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str | None] = mapped_column(String(10), default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[GroupMembership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Permissions are additive: a member has a permission if the user or any group has it.
    may_start_capacity: Mapped[bool] = mapped_column(default=False)
    keeps_capacity_on: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list[GroupMembership]] = relationship(
        back_populates="group", cascade="all, delete-orphan"
    )


class GroupMembership(Base):
    __tablename__ = "group_memberships"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )

    group: Mapped[Group] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")


class Report(Base):
    """A Power BI report the portal knows, kept in step with Power BI by a catalogue sync."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # Power BI report id
    workspace_id: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    embed_url: Mapped[str] = mapped_column(Text)
    web_url: Mapped[str] = mapped_column(Text, default="")
    rls_required: Mapped[bool] = mapped_column(default=False)
    rls_roles_required: Mapped[bool] = mapped_column(default=False)
    # The Power BI capacity of the report's workspace (lower case; see Capacity.id), None when
    # the workspace is on shared capacity or was not seen. Not a foreign key: a report sync may
    # learn of a capacity before the capacity sync records it.
    capacity_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # Gone from Power BI at the last sync: kept (grants survive a mistaken removal) but not shown.
    is_available: Mapped[bool] = mapped_column(default=True)
    # How it is embedded (access/embedding.py): "app-owned" (embed tokens), "user-owned" (the
    # person's own Entra token), or None: as the organization's default.
    embedding: Mapped[str | None] = mapped_column(String(20), default=None)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    grants: Mapped[list[ReportGrant]] = relationship(
        back_populates="report", cascade="all, delete-orphan"
    )


class Capacity(Base):
    """A Power BI capacity the connection can see, as the last capacity sync found it, plus
    what the administrator configured for it.

    The Azure coordinates (subscription, resource group, resource name, provider) are all None
    until configured ("not configured"): only then can the portal read and control the
    capacity through Azure Resource Manager.
    """

    __tablename__ = "capacities"

    # Power BI's capacity id, in lower case (Power BI writes it in either case).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(300), default="")
    sku: Mapped[str] = mapped_column(String(20), default="")
    # Power BI's word for it (Active, Suspended, …) when last seen.
    state: Mapped[str] = mapped_column(String(40), default="")
    region: Mapped[str] = mapped_column(String(100), default="")
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    subscription_id: Mapped[str | None] = mapped_column(String(64), default=None)
    resource_group: Mapped[str | None] = mapped_column(String(90), default=None)
    resource_name: Mapped[str | None] = mapped_column(String(63), default=None)
    # Microsoft.PowerBIDedicated or Microsoft.Fabric (embedportal.powerbi.CAPACITY_PROVIDERS).
    provider: Mapped[str | None] = mapped_column(String(40), default=None)
    # Pause after this many minutes without counted activity; None: never (off by default).
    idle_pause_minutes: Mapped[int | None] = mapped_column(default=None)
    # Shown to a viewer while the capacity starts on demand; "" means the portal's own words.
    starting_message: Mapped[str] = mapped_column(Text, default="")
    # Price per running hour for the cost estimate; None: the SKU's list price.
    hourly_price: Mapped[float | None] = mapped_column(
        Numeric(12, 4, asdecimal=False), default=None
    )
    # What the controller last saw and did, so a restarted controller carries on where it was.
    running_since: Mapped[datetime | None] = mapped_column(default=None)
    manually_paused_at: Mapped[datetime | None] = mapped_column(default=None)
    sku_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    # An operation the portal started and has not seen finish: (resume|suspend|change_sku).
    operation: Mapped[str | None] = mapped_column(String(20), default=None)
    operation_started_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def is_configured(self) -> bool:
        return bool(
            self.subscription_id and self.resource_group and self.resource_name and self.provider
        )


class ReportGrant(Base):
    """Lets one user, or every member of one group, open a report with the given RLS roles."""

    __tablename__ = "report_grants"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="exactly_one_grantee"),
        UniqueConstraint("report_id", "user_id", name="uq_report_grants_report_user"),
        UniqueConstraint("report_id", "group_id", name="uq_report_grants_report_group"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), default=None
    )
    rls_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    report: Mapped[Report] = relationship(back_populates="grants")
    user: Mapped[User | None] = relationship()
    group: Mapped[Group | None] = relationship()


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The absolute end, however much the session is used: fixed at sign-in
    # (EMBEDPORTAL_SESSION_LIFETIME_DAYS then).
    expires_at: Mapped[datetime] = mapped_column()
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    # Started by a single sign-on link from the organization's own application: framed by
    # the origins allowed for that, kept short, and never an administrator's session.
    via_sso: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()


class MicrosoftAccount(Base):
    """A user's Microsoft Entra account: who Entra says they are (object id within a tenant),
    and the refresh token that renews their own Power BI token, encrypted with a key derived
    from the secret key. The token is never sent to a browser; it is dropped ("") on
    sign-out and block, and the row goes with the user."""

    __tablename__ = "microsoft_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "object_id", name="uq_microsoft_accounts_tenant_object"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    refresh_token_encrypted: Mapped[str] = mapped_column(Text, default="")
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LoginThrottle(Base):
    """Failed sign-ins lately for one key, and until when that key must wait (access/login.py).

    Three scopes: ``pair`` (one e-mail from one client address: the wait that doubles),
    ``address`` (one client address over every e-mail) and ``account`` (one e-mail from every
    address). The e-mail is kept only as a keyed hash (``account``), so a password typed into
    the e-mail field is never stored; ``user_id`` names the account when it exists, for
    Admin → Users and unlocking. Unknown e-mails get the same rows, so they behave the same.
    """

    __tablename__ = "login_throttles"

    # sha256 of scope, account hash and address: one row per key, found without a scan.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))
    account: Mapped[str] = mapped_column(String(64), default="", index=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    # The last right password from this address for this account (pair rows only): such an
    # address is the owner's, and the wide limits (address, account) do not hold it back.
    succeeded_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TwoStepCredential(Base):
    """A user's authenticator app (TOTP, access/two_step.py). A row with no ``enabled_at`` is
    an enrolment begun and not yet confirmed with a code: it signs nobody in."""

    __tablename__ = "two_step_credentials"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # Fernet, with a key derived from the secret key for this purpose alone.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last time step a code was accepted for: no code of that step or before counts again.
    last_used_step: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TwoStepRecoveryCode(Base):
    """One single-use recovery code, kept only as the SHA-256 of its (random, 60-bit) text."""

    __tablename__ = "two_step_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """Who did what, when. Never holds a token or a secret."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    actor_email: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(80))
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Organization(Base):
    """The single row of organization-wide settings (id is always 1)."""

    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    name: Mapped[str] = mapped_column(String(200), default="embedportal")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # The Power BI connection; empty fields fall back to EMBEDPORTAL_POWERBI_* settings.
    powerbi_tenant_id: Mapped[str] = mapped_column(String(64), default="")
    powerbi_client_id: Mapped[str] = mapped_column(String(64), default="")
    # Encrypted with the secret key; the UI never shows it back (write-only).
    powerbi_client_secret_encrypted: Mapped[str] = mapped_column(Text, default="")
    powerbi_workspace_id: Mapped[str] = mapped_column(String(64), default="")
    # Token keeper policy, sent to every open viewer.
    refresh_every_minutes: Mapped[int | None] = mapped_column(default=None)
    token_lifetime_minutes: Mapped[int] = mapped_column(default=60)
    refresh_margin_minutes: Mapped[int] = mapped_column(default=10)
    interaction_min_age_minutes: Mapped[int] = mapped_column(default=5)
    # The global block: no user or group may turn a capacity on by opening a report.
    nobody_may_start_capacity: Mapped[bool] = mapped_column(default=False)
    # How people sign in: "password", "microsoft" or "both" (access/microsoft_signin.py).
    sign_in_methods: Mapped[str] = mapped_column(String(20), default="password")
    # The app registration people sign in with Microsoft through; empty fields fall back to
    # the Power BI connection's. The secret is encrypted like the Power BI one, write-only.
    microsoft_tenant_id: Mapped[str] = mapped_column(String(64), default="")
    microsoft_client_id: Mapped[str] = mapped_column(String(64), default="")
    microsoft_client_secret_encrypted: Mapped[str] = mapped_column(Text, default="")
    # Tenant ids whose people may sign up on their first Microsoft sign-in, space-separated.
    microsoft_signup_tenants: Mapped[str] = mapped_column(Text, default="")
    # "Require two-step sign-in for administrators"; None until an administrator chooses, and
    # then on in production, off in development (the demo admin signs in with a password).
    require_two_step_for_admins: Mapped[bool | None] = mapped_column(default=None)
    # How reports without a choice of their own are embedded: "app-owned" or "user-owned".
    default_embedding: Mapped[str] = mapped_column(String(20), default="app-owned")
    # Branding: the primary colour as "#rrggbb", empty for the portal's own (access/branding.py).
    brand_color: Mapped[str] = mapped_column(String(7), default="")
    # Origins allowed to frame single sign-on sessions, space-separated (access/sso_origins.py).
    sso_frame_ancestors: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BrandImage(Base):
    """An image the organization brands the portal with: its logo, favicon or sign-in
    background. In the database, not on a disk, so every instance of a fleet serves it."""

    __tablename__ = "brand_images"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # branding.IMAGE_KINDS
    content_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the data: the URL's version, so browsers may cache an image for a year.
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ViewerEventCount(Base):
    """How often open viewers reported one kind of event, per UTC day, report and reason.

    Counts, not rows per event: a wall of screens refreshing every hour for a year stays small.
    `report_id` is kept after the report leaves the catalogue (history outlives it) and is None
    when the viewer named no report, or one the portal did not know.
    """

    __tablename__ = "viewer_event_counts"
    __table_args__ = (
        UniqueConstraint(
            "day", "report_id", "event_type", "reason", name="uq_viewer_event_counts_key"
        ),
        # NULLs never collide in the key above, so counters without a report have their own
        # (partial) unique index: every counter exists once, and an upsert can find it.
        Index(
            "uq_viewer_event_counts_no_report",
            "day",
            "event_type",
            "reason",
            unique=True,
            sqlite_where=text("report_id IS NULL"),
            postgresql_where=text("report_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    report_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # One of embedportal.metrics.VIEWER_EVENT_TYPES.
    event_type: Mapped[str] = mapped_column(String(20))
    # A known reason (see embedportal.access.viewer_health), "other", or "" when none was given.
    reason: Mapped[str] = mapped_column(String(40), default="")
    count: Mapped[int] = mapped_column(default=0)


class CapacityScheduleEntry(Base):
    """One row of a capacity's weekly schedule: on this weekday at this local time (in the
    organization's time zone), turn the capacity on, off, or change its SKU."""

    __tablename__ = "capacity_schedule_entries"
    __table_args__ = (UniqueConstraint("capacity_id", "weekday", "at_minute"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    capacity_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("capacities.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column()  # 0 = Monday … 6 = Sunday
    at_minute: Mapped[int] = mapped_column()  # minutes after local midnight, 0 … 1439
    action: Mapped[str] = mapped_column(String(20))  # turn_on | turn_off | change_sku
    sku: Mapped[str | None] = mapped_column(String(20), default=None)


class CapacityActivity(Base):
    """The activity ledger, compact: one row per capacity, user and minute in which that user
    did something with one of the capacity's reports. ``last_counted_at`` is the latest instant
    in that minute that keeps the capacity on (opening and interaction always do; heartbeats and
    timed refreshes only for users who keep it on), None when nothing in it counted."""

    __tablename__ = "capacity_activity"
    __table_args__ = (
        Index("ix_capacity_activity_counted", "capacity_id", "last_counted_at"),
        Index("ix_capacity_activity_minute", "minute"),
    )

    capacity_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("capacities.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(primary_key=True)  # UTC, whole minutes
    # Everything seen that minute, counted or not, as ActivityKind values joined by commas.
    kinds: Mapped[str] = mapped_column(String(100), default="")
    last_counted_at: Mapped[datetime | None] = mapped_column(default=None)


class CapacityEvent(Base):
    """The capacity audit: every start, pause and SKU change (and every failed one) with its
    reason and, when a person caused it, who."""

    __tablename__ = "capacity_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    capacity_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("capacities.id", ondelete="CASCADE"), index=True
    )
    # started | paused | sku_changed | start_failed | pause_failed | sku_change_failed
    action: Mapped[str] = mapped_column(String(40))
    # manual | on_demand | schedule | inactivity | inactivity_after_schedule | outside_portal
    reason: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    user_email: Mapped[str] = mapped_column(String(320), default="")
    sku_before: Mapped[str] = mapped_column(String(20), default="")
    sku_after: Mapped[str] = mapped_column(String(20), default="")
    error: Mapped[str] = mapped_column(Text, default="")


class CapacityResumeRequest(Base):
    """A viewer allowed to turn the capacity on opened one of its reports while it was off;
    the controller (on whichever instance holds the lease) starts it. One row per capacity:
    the earliest pending request names who asked."""

    __tablename__ = "capacity_resume_requests"

    capacity_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("capacities.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    user_email: Mapped[str] = mapped_column(String(320), default="")


class ControllerLease(Base):
    """Which portal instance runs a background controller: the holder renews its lease; when
    it lapses (the instance died), another takes over. Works alike on SQLite and PostgreSQL."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column()


class MailState(enum.StrEnum):
    # Waiting for its first attempt, or for the next one after a failure (`last_error` set).
    PENDING = "pending"
    SENT = "sent"
    # Given up after EMBEDPORTAL_MAIL_MAX_ATTEMPTS, or refused for good by the server.
    FAILED = "failed"


class OutboxMail(Base):
    """A mail to send (mail/outbox.py): written in the same transaction as the change that
    causes it, sent by whichever instance claims it first (`claimed_by` until `claimed_until`)."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_state_next_attempt_at", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(10), default="en")
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    state: Mapped[MailState] = mapped_column(
        Enum(
            MailState,
            native_enum=False,
            length=10,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=MailState.PENDING,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(120), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # Where it went without an SMTP server ("log"), or the server's last refusal.
    delivered_to: Mapped[str] = mapped_column(String(10), default="")
    last_error: Mapped[str] = mapped_column(String(500), default="")


class PasswordLink(Base):
    """A single-use link to set a password: an invitation or a reset (access/password_links.py).

    Only the sha256 of the link's token is stored. `password_fingerprint` is a keyed hash of
    the user's password hash when the link was made, so any later change of password, by
    whatever way, makes the link useless."""

    __tablename__ = "password_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    password_fingerprint: Mapped[str] = mapped_column(String(64))


class ApiKey(Base):
    """A key an application of the organization's calls `/api/v1` with (access/api_keys.py).

    The secret (``ep_<id>_<random>``) is shown once, when the key is made; only its sha256 is
    stored. `scopes` say what the key may do; `last_used_at` is written at most once a minute."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SsoLink(Base):
    """A single sign-on link an application issued for one user (access/sso_links.py): usable
    once, for a few minutes. Only the sha256 of the link's secret is stored."""

    __tablename__ = "sso_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    report_id: Mapped[str | None] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), default=None
    )
    hide_navigation: Mapped[bool] = mapped_column(default=False)
    tv: Mapped[bool] = mapped_column(default=False)
    # The report opens with these (access/view_filters.py, as JSON): a view option only.
    view_filters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    api_key_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class IdempotentRequest(Base):
    """A change sent to `/api/v1` with an `Idempotency-Key` (access/idempotency.py): the same
    key from the same API key within a day answers what the first request answered, without
    doing it again. `status_code` is empty while the first request is still being served."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Keys are revoked, never deleted (access/api_keys.py): no cascade to keep.
    api_key_id: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    # The sha256 of the method, path, query and body: the same key for another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(default=None)
    content_type: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
