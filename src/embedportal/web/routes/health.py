from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from embedportal.health import HealthChecker

router = APIRouter(tags=["health"])

RETRY_AFTER_SECONDS = 5


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Readiness of this instance: 200 while it can serve (a degraded dependency is named),
    503 naming the dependency it cannot serve without. Fast whatever is down: checks are
    bounded, concurrent and cached for a moment. Used by load balancers and the test harness."""
    checker: HealthChecker = request.app.state.health
    report = await checker.report()
    if report.serving:
        return JSONResponse(report.to_json())
    return JSONResponse(
        report.to_json(),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
