"""A host application that shows a portal report inside its own page, for the person signed
in to it, with no second sign-in: it asks the portal for a single sign-on link, server side,
and frames it. With HOST_PROVISION=1 it first makes sure the person exists in the portal and
may open the report, with their row-level security identity (both calls are idempotent).
Copy it into your application; see README.md beside it.

Run: EMBEDPORTAL_URL=… EMBEDPORTAL_API_KEY=… HOST_USER_EMAIL=… uvicorn app:app --port 8080
"""

from __future__ import annotations

import html
import os

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from embedportal.client import ApiError, EmbedportalClient

app = FastAPI()


def current_user_email() -> str:
    """Your application knows who is signed in; this example takes one person from the
    environment."""
    return os.environ["HOST_USER_EMAIL"]


def provision(portal: EmbedportalClient, email: str, report_id: str) -> None:
    """Just in time: the person's portal user (with the identity Power BI filters their rows
    by) and their grant to the report. Every call is idempotent, so every visit may make them:
    creating an existing user answers it unchanged, so a changed identity is set after."""
    roles = [role for role in os.environ.get("HOST_RLS_ROLES", "").split(",") if role]
    rls_username = os.environ.get("HOST_RLS_USERNAME") or None
    user = portal.create_user(email=email, rls_username=rls_username)
    if user.rls_username != rls_username:
        portal.update_user(user.id, rls_username=rls_username)
    portal.grant_report(report_id, user_id=user.id, rls_roles=roles)


@app.get("/", response_class=HTMLResponse)
def report_page() -> HTMLResponse:
    email, report_id = current_user_email(), os.environ.get("HOST_REPORT_ID") or None
    portal_url, key = os.environ["EMBEDPORTAL_URL"], os.environ["EMBEDPORTAL_API_KEY"]
    with EmbedportalClient(portal_url, key) as portal:
        try:
            if report_id and os.environ.get("HOST_PROVISION") == "1":
                provision(portal, email, report_id)
            # A new link each time the page is shown: a link works once, for a few minutes.
            link = portal.issue_sso_link(email=email, report_id=report_id, hide_navigation=True)
        except (ApiError, httpx.HTTPError) as problem:
            reason = problem.message if isinstance(problem, ApiError) else "No answer."
            body = f"<p>The report cannot be shown right now. {html.escape(reason)}</p>"
            return HTMLResponse(body, status_code=502)
    return HTMLResponse(
        "<!doctype html><html><head><title>Our application</title>"
        "<style>body{margin:0;font-family:sans-serif}"
        "iframe{border:0;width:100vw;height:calc(100vh - 3rem)}</style></head>"
        "<body><h1 style='margin:.5rem 1rem;font-size:1.5rem'>Our application</h1>"
        f'<iframe id="portal" src="{html.escape(link.url)}" title="Report" allowfullscreen>'
        "</iframe>"
        "</body></html>"
    )
