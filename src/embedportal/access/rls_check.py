"""Trying an RLS identity before it is saved, so a mistyped role is refused on the form and not
found by a viewer.

Power BI checks role names when it mints an embed token: GenerateToken with the identity a
grant or a user's RLS settings would give is the check. The token is thrown away (shown to
nobody, cached for nobody). Only the roles can be checked: a username that matches no rows is
not an error to Power BI (the report then shows no data), which "View as" lets an
administrator see.

* ``grant_trials`` and ``user_trials`` say which identities a change would bring, one per
  dataset of the reports it concerns (only reports whose dataset uses RLS, only identities
  with a role: without one there is nothing to try);
* ``try_identities`` asks Power BI, every trial at once and within ``CHECK_SECONDS``; a
  refusal is told in plain words (``RlsRefusal.message``), and a Power BI that cannot be asked
  leaves the trial unchecked (the form then offers to save anyway);
* ``roles_in_use`` lists the roles already given for a dataset, offered as choices.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.grants import visible_reports
from embedportal.db.models import Group, GroupMembership, Report, ReportGrant, User
from embedportal.i18n import _
from embedportal.powerbi import EffectiveIdentity, PowerBIBadRequestError, PowerBIError
from embedportal.tokens.service import TokenMinter

# How long the whole check may take before the trials still unanswered count as unchecked.
CHECK_SECONDS = 8.0
# A change can concern many reports (an administrator's roles reach every RLS report): at most
# this many datasets are tried; the rest are left unchecked.
MAX_TRIALS = 20
# The shortest token Power BI issues is enough: it is never used.
TRIAL_LIFETIME_MINUTES = 1

_UNKNOWN_ROLE = re.compile(r"Role '(?P<role>[^']*)' does not exist", re.IGNORECASE)
_ROLES_REQUIRED = re.compile(r"requires roles", re.IGNORECASE)
_GUID = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")


@dataclass(frozen=True)
class RlsTrial:
    """One identity to try on one report (its dataset is what Power BI checks)."""

    report_id: str
    report_name: str
    dataset_id: str
    username: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class RlsRefusal:
    """Power BI refused the identity for the report; ``message()`` says so in plain words."""

    report_name: str
    kind: Literal["unknown_role", "roles_required", "refused"]
    role: str = ""
    detail: str = ""

    def message(self) -> str:
        if self.kind == "unknown_role":
            return _(
                "The RLS role “%(role)s” does not exist in this report's data (%(report)s). "
                "Check its spelling: role names must match the report's roles exactly.",
                role=self.role,
                report=self.report_name,
            )
        if self.kind == "roles_required":
            return _(
                "This report's data (%(report)s) needs at least one RLS role.",
                report=self.report_name,
            )
        return _(
            "Power BI refused this RLS identity for %(report)s: %(reason)s",
            report=self.report_name,
            reason=self.detail,
        )


@dataclass(frozen=True)
class RlsCheck:
    """What the trials found: refusals (nothing may be saved), and the reports whose check
    could not run (Power BI unreachable, slow, or the connection incomplete)."""

    refusals: tuple[RlsRefusal, ...] = ()
    unchecked: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    def messages(self) -> list[str]:
        return [refusal.message() for refusal in self.refusals]

    def unchecked_message(self) -> str:
        return _(
            "The RLS roles could not be checked: Power BI did not answer (%(reports)s). Try "
            "again, or tick “Save without the check” to save them as they are.",
            reports=", ".join(self.unchecked),
        )


def _union(*role_lists: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for roles in role_lists:
        for role in roles:
            seen.setdefault(role, None)
    return tuple(seen)


def _deduplicated(trials: Iterable[RlsTrial]) -> list[RlsTrial]:
    """One trial per (dataset, username, roles): Power BI checks roles per dataset."""
    seen: dict[tuple[str, str, tuple[str, ...]], RlsTrial] = {}
    for trial in trials:
        seen.setdefault((trial.dataset_id, trial.username, tuple(sorted(trial.roles))), trial)
    return list(seen.values())


def _concerned(report: Report) -> bool:
    return report.rls_required and report.is_available and bool(report.dataset_id)


def _user_grant_roles(
    session: Session, user: User, report: Report, *, leave_out: ReportGrant | None = None
) -> list[list[str]]:
    """The roles of every grant that lets the user open the report (their own and their
    groups'), without ``leave_out`` (the grant being changed)."""
    group_ids = list(
        session.scalars(select(GroupMembership.group_id).where(GroupMembership.user_id == user.id))
    )
    query = select(ReportGrant).where(ReportGrant.report_id == report.id)
    grants = [
        grant
        for grant in session.scalars(query)
        if (grant.user_id == user.id or grant.group_id in group_ids) and grant is not leave_out
    ]
    return [list(grant.rls_roles or []) for grant in grants]


# The username a group's roles are tried with when nobody is at hand to lend theirs.
GROUP_TRIAL_USERNAME = "rls-check@embedportal.invalid"


def grant_trials(
    *,
    session: Session,
    report: Report,
    roles: Sequence[str],
    user: User | None = None,
    group: Group | None = None,
    grant: ReportGrant | None = None,
    actor: User | None,
) -> list[RlsTrial]:
    """The identity a grant of ``roles`` to the user (or the group) would give on the report.
    A user's: their RLS username and every role they would have there. A group's: its roles,
    with its first member's username (the administrator's when it has none; a stand-in name
    for an API key's call), since the roles are what Power BI checks. ``grant`` is the grant
    being changed, if it exists."""
    if not _concerned(report):
        return []
    if grant is not None:
        user, group = grant.user, grant.group
    if user is not None:
        username = user.rls_username or user.email
        all_roles = _union(
            user.rls_roles or [],
            *_user_grant_roles(session, user, report, leave_out=grant),
            roles,
        )
    elif group is not None:
        member = session.scalar(
            select(User)
            .join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group.id)
            .order_by(User.id)
            .limit(1)
        )
        who = member or actor
        username = (who.rls_username or who.email) if who is not None else GROUP_TRIAL_USERNAME
        all_roles = _union(roles)
    else:
        return []
    if not all_roles:
        return []
    return [
        RlsTrial(
            report_id=report.id,
            report_name=report.name,
            dataset_id=report.dataset_id,
            username=username,
            roles=all_roles,
        )
    ]


def user_trials(
    *, session: Session, user: User, rls_username: str | None, rls_roles: Sequence[str]
) -> list[RlsTrial]:
    """The identities new RLS settings would give the user on every report they can open
    whose dataset uses RLS (blocked users open nothing, so nothing is tried)."""
    trials = []
    for report in visible_reports(session=session, user=user):
        if not _concerned(report):
            continue
        roles = _union(rls_roles, *_user_grant_roles(session, user, report))
        if not roles:
            continue
        trials.append(
            RlsTrial(
                report_id=report.id,
                report_name=report.name,
                dataset_id=report.dataset_id,
                username=rls_username or user.email,
                roles=roles,
            )
        )
    return trials


def _refusal(trial: RlsTrial, error: PowerBIBadRequestError) -> RlsRefusal:
    kind, role, detail = identity_problem(error.message)
    return RlsRefusal(trial.report_name, kind, role=role, detail=detail)


def identity_problem(
    message: str,
) -> tuple[Literal["unknown_role", "roles_required", "refused"], str, str]:
    """What Power BI's refusal of an identity says: (kind, the role it names, its own words
    without the ids that mean nothing to a person)."""
    unknown = _UNKNOWN_ROLE.search(message)
    if unknown is not None:
        return "unknown_role", unknown.group("role"), ""
    if _ROLES_REQUIRED.search(message):
        return "roles_required", "", ""
    return "refused", "", without_ids(message)


def without_ids(message: str) -> str:
    """A service's message with its GUIDs (dataset, report, request ids) left out."""
    return _GUID.sub("…", message).strip()


async def _try(minter: TokenMinter, trial: RlsTrial) -> RlsRefusal | None:
    identity = EffectiveIdentity(
        username=trial.username, roles=trial.roles, datasets=(trial.dataset_id,)
    )
    try:
        await minter.generate_token(
            report_ids=[trial.report_id],
            dataset_ids=[trial.dataset_id],
            identities=[identity],
            lifetime_minutes=TRIAL_LIFETIME_MINUTES,
        )
    except PowerBIBadRequestError as error:
        return _refusal(trial, error)
    return None


async def try_identities(
    *,
    minter: TokenMinter | None,
    trials: Sequence[RlsTrial],
    timeout_seconds: float = CHECK_SECONDS,
) -> RlsCheck:
    """Ask Power BI for a token with each trial's identity (the tokens are dropped). None for
    ``minter``: no connection to ask, so nothing is checked."""
    trials = _deduplicated(trials)
    if not trials:
        return RlsCheck()
    tried, left = trials[:MAX_TRIALS], trials[MAX_TRIALS:]
    unchecked = [trial.report_name for trial in left]
    if minter is None:
        return RlsCheck(unchecked=tuple(trial.report_name for trial in trials))
    tasks = [asyncio.ensure_future(_try(minter, trial)) for trial in tried]
    done, pending = await asyncio.wait(tasks, timeout=timeout_seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    refusals = []
    for trial, task in zip(tried, tasks, strict=True):
        if task not in done or task.cancelled():
            unchecked.append(trial.report_name)
            continue
        error = task.exception()
        if isinstance(error, PowerBIError):
            unchecked.append(trial.report_name)  # unreachable, throttled, credentials refused…
        elif error is not None:
            raise error
        elif (refusal := task.result()) is not None:
            refusals.append(refusal)
    return RlsCheck(refusals=tuple(refusals), unchecked=tuple(dict.fromkeys(unchecked)))


def roles_in_use(*, session: Session, dataset_id: str) -> list[str]:
    """The RLS roles already given for the dataset (by grants on its reports, and on the users
    who can open them through a grant), by name: the likely choices for a new grant."""
    report_ids = list(session.scalars(select(Report.id).where(Report.dataset_id == dataset_id)))
    if not report_ids:
        return []
    roles: set[str] = set()
    grants = list(session.scalars(select(ReportGrant).where(ReportGrant.report_id.in_(report_ids))))
    user_ids: set[int] = set()
    group_ids: set[int] = set()
    for grant in grants:
        roles.update(grant.rls_roles or [])
        if grant.user_id is not None:
            user_ids.add(grant.user_id)
        if grant.group_id is not None:
            group_ids.add(grant.group_id)
    if group_ids:
        user_ids.update(
            session.scalars(
                select(GroupMembership.user_id).where(GroupMembership.group_id.in_(group_ids))
            )
        )
    if user_ids:
        for user_roles in session.scalars(select(User.rls_roles).where(User.id.in_(user_ids))):
            roles.update(user_roles or [])
    return sorted(roles, key=str.casefold)


def roles_in_use_for_user(*, session: Session, user: User) -> list[str]:
    """The roles in use for the datasets of the RLS reports the user can open."""
    datasets = {
        report.dataset_id
        for report in visible_reports(session=session, user=user)
        if report.rls_required
    }
    roles: set[str] = set()
    for dataset_id in datasets:
        roles.update(roles_in_use(session=session, dataset_id=dataset_id))
    return sorted(roles, key=str.casefold)
