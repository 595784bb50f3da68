"""A typed Python client for the portal's integration API (`/api/v1`, docs/integration-api.md).

It needs only httpx: a host application installs embedportal (or copies this one module) and
never imports the server. Answers come back as frozen dataclasses; a refusal raises
`ApiError` (or one of its subclasses) with the API's machine code, its message and, for 429,
the seconds to wait.

    with EmbedportalClient("https://reports.example.com", api_key) as portal:
        ana = portal.create_user(email="ana@example.com", name="Ana")
        portal.grant_report("9b1c…", user_id=ana.id, rls_roles=["North"])
        link = portal.issue_sso_link(email=ana.email, report_id="9b1c…")
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

__all__ = [
    "ApiError",
    "AuditEntry",
    "EmbedportalClient",
    "Filter",
    "Grant",
    "Group",
    "Member",
    "NotFound",
    "Page",
    "PermissionDenied",
    "RateLimited",
    "Report",
    "SsoLink",
    "Unauthorized",
    "User",
]


class ApiError(Exception):
    """The portal refused the call: `status`, the machine `code` (e.g. "InvalidInput") and the
    `message` for people; `retry_after` (seconds) when the portal said when to try again."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Unauthorized(ApiError):
    """401: no key, or a wrong, expired or revoked one."""


class PermissionDenied(ApiError):
    """403: the key lacks the scope, or the portal refuses the object (e.g. ReportNotAllowed)."""


class NotFound(ApiError):
    """404: no such user, group, report or grant."""


class RateLimited(ApiError):
    """429: too many calls with this key; `retry_after` says how long to wait."""


_ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    429: RateLimited,
}


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    role: str
    language: str | None
    blocked: bool
    rls_username: str | None
    rls_roles: list[str]
    may_start_capacity: bool
    keeps_capacity_on: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    description: str
    member_count: int
    may_start_capacity: bool
    keeps_capacity_on: bool
    created_at: datetime


@dataclass(frozen=True)
class Member:
    id: int
    email: str
    name: str


@dataclass(frozen=True)
class Report:
    id: str
    name: str
    workspace_id: str
    dataset_id: str
    rls_required: bool
    rls_roles_required: bool
    capacity_id: str | None
    available: bool


@dataclass(frozen=True)
class Grant:
    id: int
    report_id: str
    user_id: int | None
    user_email: str | None
    group_id: int | None
    group_name: str | None
    rls_roles: list[str]
    created_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    action: str
    actor_user_id: int | None
    actor_email: str
    api_key: str | None
    target_type: str
    target_id: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """A basic filter a report opens with: rows whose `column` of `table` is (operator "In")
    or is not ("NotIn") one of `values`. A view option: the reader can change it."""

    table: str
    column: str
    values: tuple[str | int | float | bool, ...]
    operator: typing.Literal["In", "NotIn"] = "In"


@dataclass(frozen=True)
class SsoLink:
    url: str
    expires_at: datetime
    user_id: int
    report_id: str | None


Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(typing.Generic[Item]):
    items: list[Item]
    total: int
    page: int
    per_page: int


def _parse(cls: type[Item], data: Mapping[str, Any]) -> Item:
    """A dataclass from the API's JSON: the fields it knows (a newer portal may send more),
    datetimes parsed."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = data.get(field.name)
        if isinstance(value, str) and _is_datetime(hints[field.name]):
            value = datetime.fromisoformat(value)
        values[field.name] = value
    return cls(**values)


def _is_datetime(hint: Any) -> bool:
    if hint is datetime:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return datetime in typing.get_args(hint)
    return False


class EmbedportalClient:
    """The integration API of one portal, with one API key (`ep_…`).

    `retry_rate_limited=True` waits out one 429 (its Retry-After, at most 60 s) and tries once
    more; otherwise a 429 raises `RateLimited` at once. Each change (POST, PATCH) is sent with
    an `Idempotency-Key` of its own, so a call whose answer was lost on the way is sent once
    more and gets the first answer, never a second change. Pass `transport` to route the calls
    elsewhere (tests, a proxy)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retry_rate_limited: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self._retry_rate_limited = retry_rate_limited

    def __enter__(self) -> EmbedportalClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- users ------------------------------------------------------------------------------

    def list_users(
        self, *, q: str = "", blocked: bool | None = None, page: int = 1, per_page: int = 50
    ) -> Page[User]:
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if q:
            params["q"] = q
        if blocked is not None:
            params["blocked"] = "true" if blocked else "false"
        return self._page(User, self._call("GET", "/users", params=params))

    def iter_users(self, *, q: str = "", blocked: bool | None = None) -> Iterator[User]:
        """Every user the filter matches, page after page."""
        page = 1
        while True:
            chunk = self.list_users(q=q, blocked=blocked, page=page, per_page=200)
            yield from chunk.items
            if page * chunk.per_page >= chunk.total or not chunk.items:
                return
            page += 1

    def get_user(self, user_id: int) -> User:
        return _parse(User, self._call("GET", f"/users/{user_id}"))

    def create_user(self, *, email: str, **fields: Any) -> User:
        """Create a user (name, role, language, rls_username, rls_roles, may_start_capacity,
        keeps_capacity_on, invite); an existing e-mail answers with that user, unchanged."""
        return _parse(User, self._call("POST", "/users", json={"email": email, **fields}))

    def update_user(self, user_id: int, **changes: Any) -> User:
        """Change only what is given (e.g. ``rls_roles=["North"], save_unchecked=True``)."""
        return _parse(User, self._call("PATCH", f"/users/{user_id}", json=changes))

    def block_user(self, user_id: int) -> User:
        return _parse(User, self._call("POST", f"/users/{user_id}/block"))

    def unblock_user(self, user_id: int) -> User:
        return _parse(User, self._call("POST", f"/users/{user_id}/unblock"))

    def delete_user(self, user_id: int) -> None:
        self._call("DELETE", f"/users/{user_id}")

    # --- groups -----------------------------------------------------------------------------

    def list_groups(self) -> list[Group]:
        return [_parse(Group, item) for item in self._call("GET", "/groups")["items"]]

    def get_group(self, group_id: int) -> Group:
        return _parse(Group, self._call("GET", f"/groups/{group_id}"))

    def create_group(self, *, name: str, **fields: Any) -> Group:
        return _parse(Group, self._call("POST", "/groups", json={"name": name, **fields}))

    def delete_group(self, group_id: int) -> None:
        self._call("DELETE", f"/groups/{group_id}")

    def list_members(self, group_id: int) -> list[Member]:
        answer = self._call("GET", f"/groups/{group_id}/members")
        return [_parse(Member, item) for item in answer["items"]]

    def add_member(
        self, group_id: int, *, user_id: int | None = None, email: str | None = None
    ) -> Member:
        body = {"user_id": user_id} if user_id is not None else {"email": email}
        return _parse(Member, self._call("POST", f"/groups/{group_id}/members", json=body))

    def remove_member(self, group_id: int, user_id: int) -> None:
        self._call("DELETE", f"/groups/{group_id}/members/{user_id}")

    # --- reports and grants -----------------------------------------------------------------

    def list_reports(self) -> list[Report]:
        return [_parse(Report, item) for item in self._call("GET", "/reports")["items"]]

    def get_report(self, report_id: str) -> Report:
        return _parse(Report, self._call("GET", f"/reports/{_segment(report_id)}"))

    def list_grants(self, report_id: str) -> list[Grant]:
        answer = self._call("GET", f"/reports/{_segment(report_id)}/grants")
        return [_parse(Grant, item) for item in answer["items"]]

    def grant_report(
        self,
        report_id: str,
        *,
        user_id: int | None = None,
        group_id: int | None = None,
        rls_roles: list[str] | None = None,
        save_unchecked: bool = False,
    ) -> Grant:
        """Let a user or a group open the report, with RLS roles (tried with Power BI first;
        ``save_unchecked`` saves them when Power BI cannot be asked)."""
        body: dict[str, Any] = {"rls_roles": rls_roles or [], "save_unchecked": save_unchecked}
        body["user_id" if user_id is not None else "group_id"] = (
            user_id if user_id is not None else group_id
        )
        answer = self._call("POST", f"/reports/{_segment(report_id)}/grants", json=body)
        return _parse(Grant, answer)

    def revoke_grant(self, report_id: str, grant_id: int) -> None:
        self._call("DELETE", f"/reports/{_segment(report_id)}/grants/{grant_id}")

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self,
        *,
        action: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> Page[AuditEntry]:
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if action:
            params["action"] = action
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        return self._page(AuditEntry, self._call("GET", "/audit", params=params))

    # --- single sign-on ---------------------------------------------------------------------

    def issue_sso_link(
        self,
        *,
        email: str,
        report_id: str | None = None,
        hide_navigation: bool = False,
        tv: bool = False,
        lifetime_seconds: int = 300,
        filters: typing.Sequence[Filter] = (),
    ) -> SsoLink:
        """A link that signs the user in once and shows the report (docs/embedding-sso.md),
        opened with `filters` if any."""
        body: dict[str, Any] = {
            "email": email,
            "hide_navigation": hide_navigation,
            "tv": tv,
            "lifetime_seconds": lifetime_seconds,
        }
        if report_id is not None:
            body["report_id"] = report_id
        if filters:
            body["filters"] = [
                {**dataclasses.asdict(item), "values": list(item.values)} for item in filters
            ]
        return _parse(SsoLink, self._call("POST", "/sso/links", json=body))

    # --- the wire ---------------------------------------------------------------------------

    def _page(self, cls: type[Item], answer: dict[str, Any]) -> Page[Item]:
        return Page(
            items=[_parse(cls, item) for item in answer["items"]],
            total=int(answer["total"]),
            page=int(answer.get("page", 1)),
            per_page=int(answer.get("per_page", len(answer["items"]))),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        # A change carries a key of its own, the same on each try: a retry after a lost answer
        # gets the first answer instead of doing the change twice.
        headers = {"Idempotency-Key": str(uuid.uuid4())} if method in _CHANGES else None
        retried = False
        for _attempt in range(2):  # one try and, at most, one retry
            try:
                response = self._http.request(
                    method, path, params=params, json=json, headers=headers
                )
            except httpx.TransportError:
                # The answer was lost (or the call never went): safe to send once more, but
                # for a DELETE, whose retry would say "not found" for a deletion that was made.
                if retried or method == "DELETE":
                    raise
                retried = True
                continue
            if response.status_code < 400:
                return response.json() if response.content else {}
            error = _error_of(response)
            if not retried and _worth_waiting_for(error, self._retry_rate_limited):
                retried = True
                time.sleep(min(error.retry_after or 1.0, 60.0))
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover


_CHANGES = ("POST", "PATCH")


def _worth_waiting_for(error: ApiError, retry_rate_limited: bool) -> bool:
    """A 429 when asked to wait it out; the first of two identical changes still being served."""
    if error.retry_after is None:
        return False
    if isinstance(error, RateLimited):
        return retry_rate_limited
    return error.code == "IdempotentRequestInProgress"


def _segment(value: str) -> str:
    return httpx.URL("/" + value).raw_path.decode().lstrip("/").replace("/", "%2F")


def _error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "HttpError")
    message = str(body.get("message") or body.get("detail") or response.reason_phrase)
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    kind = _ERRORS_BY_STATUS.get(response.status_code, ApiError)
    return kind(response.status_code, code, message, retry_after=retry_after)
