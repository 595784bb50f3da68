"""The report catalogue: the portal's copy of the workspaces' reports, kept in step by a sync.

The workspaces are the one set (``EMBEDPORTAL_POWERBI_WORKSPACE_ID`` or the Settings page) or,
when none is set, every workspace the service principal can see. A sync adds new reports,
updates changed ones and marks vanished ones unavailable (their grants stay, so a report
removed by mistake and published again keeps its audience). Whether a report needs an RLS
identity comes from its dataset's ``isEffectiveIdentityRequired``; which capacity it runs on,
from its workspace's ``capacityId``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.audit import record
from embedportal.access.embedding import USER_OWNED, embedding_of
from embedportal.access.microsoft_accounts import MicrosoftSignIns
from embedportal.access.organization import effective_connection, get_organization
from embedportal.access.person_tokens import PersonTokens
from embedportal.db.base import utcnow
from embedportal.db.models import Report, User
from embedportal.powerbi import DatasetInfo, PowerBIClient, ReportInfo, Workspace
from embedportal.settings import Settings


@dataclass(frozen=True)
class Catalogue:
    """What Power BI holds: ``workspace_id`` None means every workspace the service principal
    sees. ``workspaces`` gives each workspace's capacity; a report whose workspace is not among
    them keeps the capacity it had."""

    workspace_id: str | None
    reports: Sequence[ReportInfo]
    datasets: Sequence[DatasetInfo]
    workspaces: Sequence[Workspace] = ()

    def capacity_of(self, workspace_id: str) -> tuple[bool, str | None]:
        """(known, capacity id in lower case or None for shared capacity) of a workspace."""
        for workspace in self.workspaces:
            if workspace.id.lower() == workspace_id.lower():
                return True, workspace.capacity_id.lower() if workspace.capacity_id else None
        return False, None


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    removed: int
    unchanged: int


async def fetch_catalogue(*, client: PowerBIClient, workspace_id: str | None) -> Catalogue:
    """Read the reports and datasets of the workspace (None: of every workspace the service
    principal sees) from Power BI, with the workspaces' capacities (raises PowerBIError)."""
    workspaces = await client.list_workspaces()
    if workspace_id:
        wanted = workspace_id.lower()
        workspaces = [w for w in workspaces if w.id.lower() == wanted]
        ids = [workspace_id]
    else:
        ids = [w.id for w in workspaces]
    reports: list[ReportInfo] = []
    datasets: list[DatasetInfo] = []
    for one in ids:
        reports.extend(await client.list_reports(one))
        datasets.extend(await client.list_datasets(one))
    return Catalogue(
        workspace_id=workspace_id or None,
        reports=reports,
        datasets=datasets,
        workspaces=workspaces,
    )


def apply_catalogue(*, session: Session, catalogue: Catalogue, actor: User | None) -> SyncResult:
    """Bring the reports table in line with the catalogue, and audit the counts."""
    datasets = {dataset.id: dataset for dataset in catalogue.datasets}
    known = {report.id: report for report in session.scalars(select(Report))}
    now = utcnow()
    added = updated = unchanged = 0
    seen: set[str] = set()
    for info in catalogue.reports:
        seen.add(info.id)
        dataset = datasets.get(info.dataset_id or "")
        values: dict[str, Any] = {
            "workspace_id": info.workspace_id,
            "dataset_id": info.dataset_id or "",
            "name": info.name or info.id,
            "embed_url": info.embed_url,
            "web_url": info.web_url or "",
            "rls_required": bool(dataset and dataset.is_effective_identity_required),
            "rls_roles_required": bool(dataset and dataset.is_effective_identity_roles_required),
        }
        capacity_known, capacity_id = catalogue.capacity_of(info.workspace_id)
        if capacity_known:
            values["capacity_id"] = capacity_id
        report = known.get(info.id)
        if report is None:
            session.add(Report(id=info.id, is_available=True, synced_at=now, **values))
            added += 1
            continue
        changed = any(getattr(report, name) != value for name, value in values.items())
        if not report.is_available:
            report.is_available = True
            added += 1  # back in the workspace: to the people who see it, it is new again
        elif changed:
            updated += 1
        else:
            unchanged += 1
        for name, value in values.items():
            setattr(report, name, value)
        report.synced_at = now
    removed = 0
    for report in known.values():
        if report.id not in seen and report.is_available:
            report.is_available = False
            report.synced_at = now
            removed += 1
    session.flush()
    result = SyncResult(added=added, updated=updated, removed=removed, unchanged=unchanged)
    detail: dict[str, Any] = {
        "added": added,
        "updated": updated,
        "removed": removed,
        "unchanged": unchanged,
    }
    if catalogue.workspace_id is None:
        detail["workspaces"] = [workspace.id for workspace in catalogue.workspaces]
    record(
        session=session,
        actor=actor,
        action="reports.synced",
        target_type="workspace",
        target_id=catalogue.workspace_id or "*",
        detail=detail,
    )
    return result


# --- embed for your organization: the person's own Power BI rights ------------------------------


@dataclass(frozen=True)
class PersonRights:
    """What a person's own Power BI token can reach, for user-owned reports."""

    tokens: PersonTokens
    flows: MicrosoftSignIns
    session_factory: sessionmaker[Session]
    settings: Settings


def within_power_bi_rights(
    *, session: Session, user: User, reports: Sequence[Report], rights: PersonRights
) -> list[Report]:
    """``reports`` (those the portal grants ``user``) without the user-owned ones whose
    workspace the person's own token does not list. Their workspaces are listed only when a
    user-owned report is among them (kept a few minutes per person). When they cannot be known
    (no Microsoft sign-in yet, Entra or Power BI unreachable) nothing is taken away: the viewer
    then asks for a sign-in, and Power BI itself refuses a person without rights.

    Blocking (Entra, Power BI): call it in a worker thread."""
    organization = get_organization(session=session)
    user_owned = [
        report
        for report in reports
        if embedding_of(report=report, organization=organization) == USER_OWNED
    ]
    if not user_owned:
        return list(reports)
    connection = effective_connection(session=session, settings=rights.settings).connection
    api_url = connection.api_url if connection is not None else rights.settings.powerbi_api_url
    workspaces = rights.tokens.workspaces_for(
        user_id=user.id,
        session_factory=rights.session_factory,
        settings=rights.settings,
        flows=rights.flows,
        api_url=api_url,
    )
    if workspaces is None:
        return list(reports)
    hidden = {r.id for r in user_owned if r.workspace_id.lower() not in workspaces}
    return [report for report in reports if report.id not in hidden]


def catalogue_reports(*, session: Session) -> list[Report]:
    """Every report of the catalogue: available ones first, each by name."""
    return list(session.scalars(select(Report).order_by(Report.is_available.desc(), Report.name)))
