"""Who may see which report, and with which row-level-security identity.

* Administrators see every available report; blocked users see nothing.
* Anyone else sees a report granted to them directly or to one of their groups.
* The RLS identity for (user, report): username = the user's RLS username, else their e-mail;
  roles = the user's own RLS roles + the roles of every grant that lets them see the report.
  A report whose dataset requires an identity is never opened without one: when the roles the
  dataset needs are missing the user gets a reason, not an unfiltered token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.users import UserInputError, parse_rls_roles
from embedportal.db.models import Group, GroupMembership, Report, ReportGrant, User
from embedportal.i18n import N_, _
from embedportal.powerbi import EffectiveIdentity


class GrantInputError(ValueError):
    """A problem with grant input; the message is shown to the administrator."""


class RlsIdentityMissingError(Exception):
    """The report needs an RLS identity the user does not have; ``reason`` says what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _group_ids(session: Session, user: User) -> list[int]:
    return list(
        session.scalars(select(GroupMembership.group_id).where(GroupMembership.user_id == user.id))
    )


def _grants_for(session: Session, user: User, report_id: str | None = None) -> list[ReportGrant]:
    group_ids = _group_ids(session, user)
    conditions = [ReportGrant.user_id == user.id]
    if group_ids:
        conditions.append(ReportGrant.group_id.in_(group_ids))
    query = select(ReportGrant).where(or_(*conditions))
    if report_id is not None:
        query = query.where(ReportGrant.report_id == report_id)
    return list(session.scalars(query))


def visible_reports(*, session: Session, user: User) -> list[Report]:
    """The available reports the user may open, by name."""
    if user.is_blocked:
        return []
    query = select(Report).where(Report.is_available.is_(True)).order_by(Report.name, Report.id)
    if not user.is_admin:
        report_ids = {grant.report_id for grant in _grants_for(session, user)}
        if not report_ids:
            return []
        query = query.where(Report.id.in_(report_ids))
    return list(session.scalars(query))


def can_view(*, session: Session, user: User, report: Report) -> bool:
    if user.is_blocked or not report.is_available:
        return False
    if user.is_admin:
        return True
    return bool(_grants_for(session, user, report.id))


def _union(*role_lists: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for roles in role_lists:
        for role in roles:
            seen.setdefault(role, None)
    return list(seen)


@dataclass(frozen=True)
class RlsIdentity:
    username: str
    roles: tuple[str, ...]


def rls_identity_of(*, session: Session, user: User, report: Report) -> RlsIdentity:
    """The identity (username, roles) the user would present for the report."""
    grant_roles = [grant.rls_roles or [] for grant in _grants_for(session, user, report.id)]
    roles = _union(user.rls_roles or [], *grant_roles)
    return RlsIdentity(username=user.rls_username or user.email, roles=tuple(roles))


def effective_identity(*, session: Session, user: User, report: Report) -> EffectiveIdentity | None:
    """What GenerateToken must carry for this user and report: None when the dataset has no
    row-level security; raises RlsIdentityMissingError when it has but the user lacks a role."""
    if not report.rls_required:
        return None
    identity = rls_identity_of(session=session, user=user, report=report)
    if report.rls_roles_required and not identity.roles:
        raise RlsIdentityMissingError(
            N_(
                "This report uses row-level security and your account has no RLS role for it, so "
                "it cannot be shown to you. Ask an administrator to set your RLS role for this "
                "report (Admin → Reports)."
            )
        )
    return EffectiveIdentity(
        username=identity.username, roles=identity.roles, datasets=(report.dataset_id,)
    )


# --- who sees what, and why (the admin pages) ---------------------------------------------------


@dataclass(frozen=True)
class ReportAccess:
    """One report a user can open, and why: their own grant, their groups' grants (by name), or
    being an administrator; with the RLS identity they would present."""

    report: Report
    own_grant: ReportGrant | None
    group_grants: tuple[tuple[str, ReportGrant], ...]
    as_admin: bool
    identity: RlsIdentity | None


def access_of(*, session: Session, user: User) -> list[ReportAccess]:
    """Every report the user can open now (none when blocked), by name, with the reasons."""
    reports = visible_reports(session=session, user=user)
    if not reports:
        return []
    memberships: dict[int, str] = dict(
        session.execute(
            select(GroupMembership.group_id, Group.name)
            .join(Group, Group.id == GroupMembership.group_id)
            .where(GroupMembership.user_id == user.id)
        ).all()
    )
    by_report: dict[str, list[ReportGrant]] = {}
    for grant in _grants_for(session, user):
        by_report.setdefault(grant.report_id, []).append(grant)
    access = []
    for report in reports:
        grants = by_report.get(report.id, [])
        own = next((grant for grant in grants if grant.user_id == user.id), None)
        through_groups = tuple(
            sorted(
                (
                    (memberships[grant.group_id], grant)
                    for grant in grants
                    if grant.group_id is not None and grant.group_id in memberships
                ),
                key=lambda pair: pair[0].casefold(),
            )
        )
        identity = (
            rls_identity_of(session=session, user=user, report=report)
            if report.rls_required
            else None
        )
        access.append(
            ReportAccess(
                report=report,
                own_grant=own,
                group_grants=through_groups,
                as_admin=user.is_admin and own is None and not through_groups,
                identity=identity,
            )
        )
    return access


def reports_of_group(*, session: Session, group: Group) -> list[tuple[Report, ReportGrant]]:
    """The reports granted to the group, by name, with each grant (its RLS roles)."""
    rows = session.execute(
        select(Report, ReportGrant)
        .join(ReportGrant, ReportGrant.report_id == Report.id)
        .where(ReportGrant.group_id == group.id)
        .order_by(Report.name, Report.id)
    )
    return [(report, grant) for report, grant in rows]


# --- administration ------------------------------------------------------------------------------


def parse_roles(value: str | Sequence[str]) -> list[str]:
    """RLS roles from the grant form (comma-separated, as on the user form) or a list, checked
    like Power BI checks them: at most 50 roles of at most 50 characters, no commas in a name.
    Raises GrantInputError."""
    try:
        return parse_rls_roles(value)
    except UserInputError as error:
        raise GrantInputError(" ".join(error.errors.values())) from None


def grants_of(*, session: Session, report: Report) -> list[ReportGrant]:
    """The report's grants: groups first, then users, each by name."""
    grants = list(session.scalars(select(ReportGrant).where(ReportGrant.report_id == report.id)))

    def order(grant: ReportGrant) -> tuple[int, str]:
        if grant.group is not None:
            return (0, grant.group.name.lower())
        return (1, grant.user.email if grant.user is not None else "")

    return sorted(grants, key=order)


def grant_report(
    *,
    session: Session,
    report: Report,
    user: User | None = None,
    group: Group | None = None,
    roles: Sequence[str],
    actor: User | None,
) -> ReportGrant:
    """Let a user or a group open the report (with RLS roles). Granting again updates roles."""
    if (user is None) == (group is None):
        raise GrantInputError("Choose either a user or a group.")
    roles = parse_roles(roles)
    query = select(ReportGrant).where(ReportGrant.report_id == report.id)
    if user is not None:
        query = query.where(ReportGrant.user_id == user.id)
    else:
        assert group is not None
        query = query.where(ReportGrant.group_id == group.id)
    grant = session.scalar(query)
    created = grant is None
    if grant is None:
        grant = ReportGrant(report=report, user=user, group=group, rls_roles=list(roles))
        session.add(grant)
    else:
        grant.rls_roles = list(roles)
    session.flush()
    record(
        session=session,
        actor=actor,
        action="report.granted" if created else "report.grant_changed",
        target_type="report",
        target_id=report.id,
        detail={
            "report": report.name,
            "grantee": _grantee_label(grant),
            "rls_roles": list(roles),
        },
    )
    return grant


def set_grant_roles(
    *, session: Session, grant: ReportGrant, roles: Sequence[str], actor: User | None
) -> None:
    roles = parse_roles(roles)
    old = list(grant.rls_roles or [])
    grant.rls_roles = list(roles)
    session.flush()
    record(
        session=session,
        actor=actor,
        action="report.grant_changed",
        target_type="report",
        target_id=grant.report_id,
        detail={"grantee": _grantee_label(grant), "rls_roles": {"old": old, "new": list(roles)}},
    )


def revoke_grant(*, session: Session, grant: ReportGrant, actor: User | None) -> None:
    record(
        session=session,
        actor=actor,
        action="report.revoked",
        target_type="report",
        target_id=grant.report_id,
        detail={"grantee": _grantee_label(grant)},
    )
    session.delete(grant)
    session.flush()


def _grantee_label(grant: ReportGrant) -> str:
    if grant.group is not None:
        return f"group:{grant.group.name}"
    if grant.user is not None:
        return f"user:{grant.user.email}"
    return f"group:{grant.group_id}" if grant.group_id is not None else f"user:{grant.user_id}"


# --- "View as": an administrator opens a report as a given user sees it ------------------------


def view_as_refusal(*, session: Session, user: User, report: Report) -> str | None:
    """Why the user could not open the report, in words for the administrator who asked to see
    it as them (translated); None when they can."""
    name = user.name or user.email
    if user.is_blocked:
        return _("%(name)s is blocked: they cannot open any report.", name=name)
    if not report.is_available:
        return _("%(report)s is no longer in Power BI.", report=report.name)
    if not can_view(session=session, user=user, report=report):
        return _(
            "%(name)s may not open %(report)s: it is granted neither to them nor to one of "
            "their groups.",
            name=name,
            report=report.name,
        )
    try:
        effective_identity(session=session, user=user, report=report)
    except RlsIdentityMissingError:
        return _(
            "%(name)s has no RLS role for %(report)s, so it cannot be shown to them. Give them "
            "a role on the report's grant or on their user page.",
            name=name,
            report=report.name,
        )
    return None


def record_viewed_as(*, session: Session, actor: User, user: User, report: Report) -> None:
    """Audit an administrator's opening of a report as another user (``report.viewed_as``)."""
    identity = rls_identity_of(session=session, user=user, report=report)
    record(
        session=session,
        actor=actor,
        action="report.viewed_as",
        target_type="report",
        target_id=report.id,
        detail={
            "report": report.name,
            "as_user": user.email,
            "rls_username": identity.username if report.rls_required else None,
            "rls_roles": list(identity.roles) if report.rls_required else [],
        },
    )
