"""Whether this browser is signed in, for open viewers (`GET /api/session`).

A viewer asks when something suggests its session changed: a token request refused for its
CSRF token (the person signed out and in again in another tab), a 401, another tab's sign-out,
or, while it shows "you are signed out", now and then until a session exists again. The answer
also carries the server's time, to tell a sleep from a change of the client's clock (the
`Date` header counts whole seconds only). Reading only: nothing is written, no session is made
or extended.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

router = APIRouter(tags=["viewer"])


class SessionAnswer(BaseModel):
    signed_in: bool = Field(alias="signedIn")
    # The session's CSRF token, for the viewer's next POST; null when signed out.
    csrf_token: str | None = Field(alias="csrfToken")
    # The server's clock, milliseconds since the epoch.
    server_time: int = Field(alias="serverTime")


@router.get("/api/session", response_model=SessionAnswer)
def session_state(request: Request) -> JSONResponse:
    """`{signedIn, csrfToken, serverTime}`; 200 whether or not anyone is signed in."""
    user = request.state.user
    signed_in = user is not None and not user.is_blocked
    csrf_token: str | None = request.state.csrf_token if signed_in else None
    return JSONResponse(
        {"signedIn": signed_in, "csrfToken": csrf_token, "serverTime": round(time.time() * 1000)},
        headers={"Cache-Control": "no-store"},
    )
