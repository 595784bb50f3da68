from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from embedportal.web.deps import HealthCheckerDep

router = APIRouter(tags=["health"])

RETRY_AFTER_SECONDS = 5


@router.get("/healthz")
async def healthz(checker: HealthCheckerDep) -> JSONResponse:
    """Readiness of this instance: 200 while it can serve (a degraded dependency is named),
    503 naming the dependency it cannot serve without. Fast whatever is down: checks are
    bounded, concurrent and cached for a moment. Used by load balancers and the test harness."""
    report = await checker.report()
    if report.serving:
        return JSONResponse(report.to_json())
    return JSONResponse(
        report.to_json(),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
