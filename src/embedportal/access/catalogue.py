"""The report catalogue: the portal's copy of the workspace's reports, kept in step by a sync.

A sync adds new reports, updates changed ones and marks vanished ones unavailable (their grants
stay, so a report removed by mistake and published again keeps its audience). Whether a report
needs an RLS identity comes from its dataset's ``isEffectiveIdentityRequired``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.db.base import utcnow
from embedportal.db.models import Report, User
from embedportal.powerbi import DatasetInfo, PowerBIClient, ReportInfo


@dataclass(frozen=True)
class Catalogue:
    workspace_id: str
    reports: Sequence[ReportInfo]
    datasets: Sequence[DatasetInfo]


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    removed: int
    unchanged: int


async def fetch_catalogue(*, client: PowerBIClient, workspace_id: str) -> Catalogue:
    """Read the workspace's reports and datasets from Power BI (raises PowerBIError)."""
    reports = await client.list_reports(workspace_id)
    datasets = await client.list_datasets(workspace_id)
    return Catalogue(workspace_id=workspace_id, reports=reports, datasets=datasets)


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
        values = {
            "workspace_id": catalogue.workspace_id,
            "dataset_id": info.dataset_id or "",
            "name": info.name or info.id,
            "embed_url": info.embed_url,
            "web_url": info.web_url or "",
            "rls_required": bool(dataset and dataset.is_effective_identity_required),
            "rls_roles_required": bool(dataset and dataset.is_effective_identity_roles_required),
        }
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
    record(
        session=session,
        actor=actor,
        action="reports.synced",
        target_type="workspace",
        target_id=catalogue.workspace_id,
        detail={"added": added, "updated": updated, "removed": removed, "unchanged": unchanged},
    )
    return result
