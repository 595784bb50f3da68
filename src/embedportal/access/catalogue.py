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
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.db.base import utcnow
from embedportal.db.models import Report, User
from embedportal.powerbi import DatasetInfo, PowerBIClient, ReportInfo, Workspace


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


def catalogue_reports(*, session: Session) -> list[Report]:
    """Every report of the catalogue: available ones first, each by name."""
    return list(session.scalars(select(Report).order_by(Report.is_available.desc(), Report.name)))
