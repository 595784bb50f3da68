"""The push channel (server-sent events), viewer telemetry, and /metrics."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from embedportal.access.viewer_health import ReportedEvent, record_viewer_events
from embedportal.i18n import _
from embedportal.metrics import REFRESH_REASONS
from embedportal.web.deps import (
    AppSettings,
    CsrfProtected,
    CurrentUser,
    DbSession,
    MetricsDep,
    PushHubDep,
)
from embedportal.web.push import PushEvent

router = APIRouter(tags=["viewer"])

# A comment line this often keeps proxies from closing an idle stream and shows a dead one.
HEARTBEAT_SECONDS = 15.0


def _sse(event: PushEvent) -> str:
    return f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"


@router.get(
    "/api/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    user: CurrentUser,
    hub: PushHubDep,
    metrics: MetricsDep,
) -> StreamingResponse:
    """Server-sent events for the signed-in user's open viewers: `policy`, `access`."""
    user_id = user.id

    async def stream() -> AsyncIterator[str]:
        metrics.open_viewers.inc()
        try:
            with hub.subscribe(user_id=user_id) as subscription:
                yield "retry: 3000\n\n"
                while not await request.is_disconnected():
                    event = await subscription.next(timeout=HEARTBEAT_SECONDS)
                    yield _sse(event) if event is not None else ": heartbeat\n\n"
        finally:
            metrics.open_viewers.dec()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class ViewerEvent(BaseModel):
    type: Literal["refreshed", "refreshFailed", "expired", "recovered"]
    # Free text up to 40 characters; reasons the portal does not know are counted as "other".
    reason: str | None = Field(None, max_length=40)
    # The portal's report ids are Power BI ids (GUIDs); nothing else is looked up.
    report_id: str | None = Field(
        None, alias="reportId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )


class TelemetryBatch(BaseModel):
    events: list[ViewerEvent] = Field(..., max_length=100)


@router.post("/api/telemetry", status_code=204, dependencies=[CsrfProtected])
async def telemetry(
    batch: TelemetryBatch,
    _user: CurrentUser,
    db: DbSession,
    metrics: MetricsDep,
) -> Response:
    """Open viewers report refreshes, failures, expiry screens and recoveries: counted in this
    instance's Prometheus metrics, and per day in the database for Admin → Viewer health."""
    events = [
        ReportedEvent(event_type=event.type, reason=event.reason, report_id=event.report_id)
        for event in batch.events
    ]
    if events:
        # The database is written in a worker thread: the event loop serves push streams.
        await run_in_threadpool(record_viewer_events, session=db, events=events)
    for event in batch.events:
        reason = event.reason if event.reason in REFRESH_REASONS else None
        metrics.record_viewer_event(event.type, reason)
    return Response(status_code=204)


def _bearer_token_matches(authorization: str | None, expected: str) -> bool:
    scheme, _sep, supplied = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        return False
    # Bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(
    request: Request,
    settings: AppSettings,
    metrics: MetricsDep,
) -> Response:
    """Prometheus text format. With EMBEDPORTAL_METRICS_TOKEN set, only for that bearer token;
    without it, open to anyone who reaches the portal (keep it on a private network)."""
    expected = settings.metrics_token
    if expected is not None and not _bearer_token_matches(
        request.headers.get("authorization"), expected.get_secret_value()
    ):
        raise HTTPException(
            status_code=401,
            detail=_("Send the metrics token as “Authorization: Bearer <token>”."),
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
