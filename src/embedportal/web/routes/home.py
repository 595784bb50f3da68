"""The start page: signed-in people go to their reports, everyone else to sign in."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from embedportal.web.deps import OptionalUser

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/")
def home(user: OptionalUser) -> RedirectResponse:
    return RedirectResponse("/reports" if user is not None else "/login", status_code=303)
