"""The report catalogue: a sync adds, updates and marks vanished reports unavailable (their
grants stay), takes RLS needs from the datasets and each report's capacity from its workspace,
and audits the counts. Catalogues are built by hand here; fetching them from the emulator is
covered by tests/web/test_admin_reports.py."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.catalogue import Catalogue, SyncResult, apply_catalogue
from embedportal.db.models import AuditEntry, Report
from embedportal.powerbi import DatasetInfo, ReportInfo, Workspace

WORKSPACE = "11111111-1111-1111-1111-111111111111"
CAPACITY = "AAAAAAAA-0000-0000-0000-000000000001"


def report(id_: str, name: str = "", dataset: str = "d1") -> ReportInfo:
    return ReportInfo(
        id=id_,
        name=name or id_,
        embed_url=f"https://app.powerbi.com/reportEmbed?reportId={id_}",
        dataset_id=dataset,
        workspace_id=WORKSPACE,
        web_url=None,
    )


def dataset(id_: str = "d1", rls: bool = False) -> DatasetInfo:
    return DatasetInfo(
        id=id_,
        name=id_,
        is_effective_identity_required=rls,
        is_effective_identity_roles_required=rls,
    )


def catalogue(*reports: ReportInfo, rls: bool = False, capacity: str | None = None) -> Catalogue:
    workspaces = (
        (Workspace(id=WORKSPACE, name="w", is_on_dedicated_capacity=True, capacity_id=capacity),)
        if capacity is not None
        else ()
    )
    return Catalogue(
        workspace_id=WORKSPACE, reports=reports, datasets=[dataset(rls=rls)], workspaces=workspaces
    )


def stored(db: Session) -> dict[str, Report]:
    return {row.id: row for row in db.scalars(select(Report))}


def test_a_first_sync_adds_every_report(db: Session) -> None:
    result = apply_catalogue(
        session=db, catalogue=catalogue(report("r1"), report("r2")), actor=None
    )
    assert result == SyncResult(added=2, updated=0, removed=0, unchanged=0)
    assert set(stored(db)) == {"r1", "r2"}


def test_a_second_sync_updates_what_changed_and_leaves_the_rest(db: Session) -> None:
    apply_catalogue(session=db, catalogue=catalogue(report("r1"), report("r2")), actor=None)
    result = apply_catalogue(
        session=db, catalogue=catalogue(report("r1", "Renamed"), report("r2")), actor=None
    )
    assert result == SyncResult(added=0, updated=1, removed=0, unchanged=1)
    assert stored(db)["r1"].name == "Renamed"


def test_a_vanished_report_is_kept_unavailable_and_comes_back_as_new(db: Session) -> None:
    apply_catalogue(session=db, catalogue=catalogue(report("r1"), report("r2")), actor=None)
    gone = apply_catalogue(session=db, catalogue=catalogue(report("r1")), actor=None)
    assert gone.removed == 1 and not stored(db)["r2"].is_available
    back = apply_catalogue(session=db, catalogue=catalogue(report("r1"), report("r2")), actor=None)
    assert back.added == 1 and stored(db)["r2"].is_available


def test_rls_needs_come_from_the_dataset(db: Session) -> None:
    apply_catalogue(session=db, catalogue=catalogue(report("r1"), rls=True), actor=None)
    row = stored(db)["r1"]
    assert row.rls_required and row.rls_roles_required


def test_the_capacity_comes_from_the_workspace_in_lower_case(db: Session) -> None:
    apply_catalogue(session=db, catalogue=catalogue(report("r1"), capacity=CAPACITY), actor=None)
    assert stored(db)["r1"].capacity_id == CAPACITY.lower()
    # A catalogue that does not list the workspace keeps the capacity the report had.
    apply_catalogue(session=db, catalogue=catalogue(report("r1")), actor=None)
    assert stored(db)["r1"].capacity_id == CAPACITY.lower()


def test_every_sync_is_audited_with_its_counts(db: Session) -> None:
    apply_catalogue(session=db, catalogue=catalogue(report("r1")), actor=None)
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "reports.synced")).one()
    assert entry.target_id == WORKSPACE
    assert entry.detail == {"added": 1, "updated": 0, "removed": 0, "unchanged": 0}
