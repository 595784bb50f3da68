"""A host application that shows a portal report inside its own page, for the person signed
in to it, with no second sign-in: it asks the portal for a single sign-on link, server side,
and frames it. Copy it into your application; see README.md beside it.

Run: EMBEDPORTAL_URL=… EMBEDPORTAL_API_KEY=… HOST_USER_EMAIL=… uvicorn app:app --port 8080
"""

from __future__ import annotations

import html
import os

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI()


def current_user_email() -> str:
    """Your application knows who is signed in; this example takes one person from the
    environment."""
    return os.environ["HOST_USER_EMAIL"]


@app.get("/", response_class=HTMLResponse)
def report_page() -> HTMLResponse:
    portal = os.environ["EMBEDPORTAL_URL"].rstrip("/")
    wanted: dict[str, object] = {"email": current_user_email(), "hide_navigation": True}
    if os.environ.get("HOST_REPORT_ID"):
        wanted["report_id"] = os.environ["HOST_REPORT_ID"]
    # A new link each time the page is shown: a link works once, for a few minutes.
    answer = httpx.post(
        f"{portal}/api/v1/sso/links",
        json=wanted,
        headers={"Authorization": f"Bearer {os.environ['EMBEDPORTAL_API_KEY']}"},
        timeout=10,
    )
    if answer.status_code != 201:
        reason = answer.json().get("message", "") if answer.content else ""
        body = f"<p>The report cannot be shown right now. {html.escape(reason)}</p>"
        return HTMLResponse(body, status_code=502)
    link = html.escape(answer.json()["url"])
    return HTMLResponse(
        "<!doctype html><html><head><title>Our application</title>"
        "<style>body{margin:0;font-family:sans-serif}"
        "iframe{border:0;width:100vw;height:calc(100vh - 3rem)}</style></head>"
        "<body><h1 style='margin:.5rem 1rem;font-size:1.5rem'>Our application</h1>"
        f'<iframe id="portal" src="{link}" title="Report" allowfullscreen></iframe>'
        "</body></html>"
    )
