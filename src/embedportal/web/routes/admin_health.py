"""Admin → Health: whether the portal's dependencies answer, and this instance's figures
(requests, latency, tokens, open viewers, pool, push), with charts that follow them live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from embedportal.health import DATABASE, POWERBI, REDIS, HealthChecker, HealthReport
from embedportal.i18n import _
from embedportal.metrics import snapshot
from embedportal.web.deps import AdminUser, HealthCheckerDep, MetricsDep
from embedportal.web.templating import render

router = APIRouter(prefix="/admin/health", tags=["admin"], include_in_schema=False)

# How often the page asks for new figures, and how many it keeps in its charts.
POLL_SECONDS = 5
CHART_POINTS = 60


def _dependency_label(name: str) -> str:
    labels = {
        DATABASE: _("Database"),
        REDIS: _("Redis (shared token cache and push)"),
        POWERBI: _("Power BI"),
    }
    return labels.get(name, name)


def _dependencies(report: HealthReport) -> list[dict[str, Any]]:
    return [
        {
            "name": state.name,
            "label": _dependency_label(state.name),
            "ok": state.ok,
            "critical": state.critical,
            "detail": state.detail,
            "milliseconds": round(state.seconds * 1000),
        }
        for state in report.dependencies
    ]


async def _figures(checker: HealthChecker, metrics: Any) -> dict[str, Any]:
    report = await checker.report()
    return {
        "status": report.status,
        "dependencies": _dependencies(report),
        "figures": snapshot(metrics),
    }


@router.get("")
async def health_page(
    request: Request, _admin: AdminUser, metrics: MetricsDep, checker: HealthCheckerDep
) -> Response:
    data = await _figures(checker, metrics)
    chart = {
        "pollSeconds": POLL_SECONDS,
        "points": CHART_POINTS,
        "figuresUrl": "/admin/health/figures",
        "labels": {
            "requestRate": _("Requests per second"),
            "p99": _("99th percentile (ms)"),
            "tokenRate": _("Tokens handed out per second"),
            "mintRate": _("Minted by Power BI per second"),
            "openViewers": _("Open viewers"),
            "pool": _("Database connections in use"),
        },
    }
    status_labels = {
        "ok": _("Every dependency answers."),
        "degraded": _("The portal serves, but something it uses is down."),
        "unavailable": _("The portal cannot serve: its database is down."),
    }
    return render(
        request,
        "admin/health.html",
        {**data, "chart": chart, "status_label": status_labels[data["status"]]},
    )


@router.get("/figures")
async def health_figures(
    _admin: AdminUser, metrics: MetricsDep, checker: HealthCheckerDep
) -> Response:
    """The page's figures as JSON, polled by its charts."""
    return JSONResponse(await _figures(checker, metrics), headers={"Cache-Control": "no-store"})
