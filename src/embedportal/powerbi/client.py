"""Async client for the Power BI REST API (real service or the built-in emulator).

Only the calls the portal needs: capacities, workspaces, reports, datasets and the
multi-resource GenerateToken (V2). Every call carries a service-principal token from
:class:`EntraTokenProvider`; 429s are waited out when the server asks for a short pause, GETs
survive transient failures, and every failure surfaces as a
:class:`~embedportal.powerbi.errors.PowerBIError` subclass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Unpack
from urllib.parse import quote, urlsplit

from embedportal.powerbi._http import ClientOptions, ServiceClient, json_body, request_id_of
from embedportal.powerbi.connection import POWERBI_SCOPE, PowerBIConnection
from embedportal.powerbi.errors import PowerBIProtocolError
from embedportal.powerbi.models import (
    DatasetInfo,
    EffectiveIdentity,
    EmbedToken,
    PowerBICapacity,
    ReportInfo,
    Workspace,
)

logger = logging.getLogger("embedportal.powerbi")

SERVICE = "Power BI"
# Entra life a plain REST call needs: enough that the token cannot die on the way.
DEFAULT_MIN_TOKEN_SECONDS = 120.0
# Added to the embed lifetime when the caller leaves min_entra_remaining_seconds unset.
DEFAULT_ENTRA_MARGIN_SECONDS = 60.0
# What Power BI gives an embed token without lifetimeInMinutes (about an hour).
DEFAULT_EMBED_LIFETIME_SECONDS = 3600.0
MAX_ITEMS_PER_TOKEN = 50
_MAX_PAGES = 1000


def _segment(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    return quote(value, safe="")


class PowerBIClient(ServiceClient):
    """``async with PowerBIClient(connection) as client: await client.list_workspaces()``.

    ``options`` (:class:`ClientOptions`): transports and a shared token provider for tests,
    the timeout, retries and the longest ``Retry-After`` waited out inside a call.
    """

    service = SERVICE
    scope = POWERBI_SCOPE
    default_min_token_seconds = DEFAULT_MIN_TOKEN_SECONDS

    def __init__(self, connection: PowerBIConnection, **options: Unpack[ClientOptions]) -> None:
        super().__init__(connection, base_url=connection.api_url, **options)

    # -- reading -----------------------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> Any:
        response = await self._core.request("GET", url, what=what, idempotent=True)
        return json_body(response, service=SERVICE, what=what)

    async def _list(self, path: str, what: str) -> list[Any]:
        items: list[Any] = []
        url: str | None = path
        for _ in range(_MAX_PAGES):
            if url is None:
                return items
            body = await self._get_json(url, what)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise PowerBIProtocolError(f"{SERVICE} {what}: expected {{'value': [...]}}")
            items.extend(body["value"])
            next_link = body.get("@odata.nextLink")
            url = None
            if isinstance(next_link, str) and next_link:
                parts = urlsplit(next_link)
                if parts.netloc and (parts.scheme, parts.netloc) != self._origin:
                    raise PowerBIProtocolError(
                        f"{SERVICE} {what}: next page is on another host ({parts.netloc})"
                    )
                url = next_link
        raise PowerBIProtocolError(f"{SERVICE} {what}: more than {_MAX_PAGES} pages")

    async def list_capacities(self) -> list[PowerBICapacity]:
        """Capacities the service principal has access to (its workspaces' ``capacity_id``
        name them)."""
        values = await self._list("/v1.0/myorg/capacities", "list capacities")
        return [PowerBICapacity.from_api(v) for v in values]

    async def list_workspaces(self) -> list[Workspace]:
        """Workspaces the service principal is a member of."""
        values = await self._list("/v1.0/myorg/groups", "list workspaces")
        return [Workspace.from_api(v) for v in values]

    async def list_reports(self, workspace_id: str) -> list[ReportInfo]:
        ws = _segment(workspace_id, "workspace_id")
        values = await self._list(f"/v1.0/myorg/groups/{ws}/reports", "list reports")
        return [ReportInfo.from_api(v, workspace_id=workspace_id) for v in values]

    async def get_report(self, workspace_id: str, report_id: str) -> ReportInfo:
        ws = _segment(workspace_id, "workspace_id")
        rid = _segment(report_id, "report_id")
        body = await self._get_json(f"/v1.0/myorg/groups/{ws}/reports/{rid}", "get report")
        return ReportInfo.from_api(body, workspace_id=workspace_id)

    async def list_datasets(self, workspace_id: str) -> list[DatasetInfo]:
        ws = _segment(workspace_id, "workspace_id")
        values = await self._list(f"/v1.0/myorg/groups/{ws}/datasets", "list datasets")
        return [DatasetInfo.from_api(v) for v in values]

    async def get_dataset(self, workspace_id: str, dataset_id: str) -> DatasetInfo:
        ws = _segment(workspace_id, "workspace_id")
        did = _segment(dataset_id, "dataset_id")
        body = await self._get_json(f"/v1.0/myorg/groups/{ws}/datasets/{did}", "get dataset")
        return DatasetInfo.from_api(body)

    # -- embed tokens ------------------------------------------------------------------------

    async def generate_token(
        self,
        *,
        report_ids: Sequence[str],
        dataset_ids: Sequence[str],
        identities: Sequence[EffectiveIdentity] = (),
        lifetime_minutes: int | None = None,
        min_entra_remaining_seconds: float | None = None,
    ) -> EmbedToken:
        """Mint an embed token for the reports and datasets (``POST /v1.0/myorg/GenerateToken``).

        The token cannot outlive the Entra token used to mint it, so that Entra token must have
        at least ``min_entra_remaining_seconds`` left (a fresh one is fetched otherwise). Pass
        the lifetime you want plus a margin; left unset it is ``lifetime_minutes * 60`` (or an
        hour) plus a minute. ``lifetime_minutes`` can only shorten the service's default.
        Never retried: not on a timeout (which might have minted a token), and not on a 429,
        which is raised at once with its Retry-After (a viewer is waiting; the token service
        remembers the refusal and tells every viewer when to come back).
        """
        if isinstance(report_ids, str) or isinstance(dataset_ids, str):
            raise TypeError("report_ids and dataset_ids are sequences of ids, not a string")
        if not report_ids and not dataset_ids:
            raise ValueError("GenerateToken needs at least one report or dataset")
        if len(report_ids) > MAX_ITEMS_PER_TOKEN or len(dataset_ids) > MAX_ITEMS_PER_TOKEN:
            raise ValueError(f"GenerateToken takes at most {MAX_ITEMS_PER_TOKEN} of each")
        if lifetime_minutes is not None and lifetime_minutes <= 0:
            raise ValueError("lifetime_minutes must be a positive number of minutes")
        if min_entra_remaining_seconds is None:
            wanted = (
                lifetime_minutes * 60.0
                if lifetime_minutes is not None
                else DEFAULT_EMBED_LIFETIME_SECONDS
            )
            min_entra_remaining_seconds = wanted + DEFAULT_ENTRA_MARGIN_SECONDS
        payload: dict[str, Any] = {}
        if report_ids:
            payload["reports"] = [{"id": r} for r in report_ids]
        if dataset_ids:
            payload["datasets"] = [{"id": d} for d in dataset_ids]
        if identities:
            payload["identities"] = [identity.to_api() for identity in identities]
        if lifetime_minutes is not None:
            payload["lifetimeInMinutes"] = lifetime_minutes
        what = "generate token"
        response = await self._core.request(
            "POST",
            "/v1.0/myorg/GenerateToken",
            what=what,
            idempotent=False,
            json_payload=payload,
            min_token_seconds=min_entra_remaining_seconds,
            wait_on_throttle=False,
        )
        token = EmbedToken.from_api(json_body(response, service=SERVICE, what=what))
        logger.info(
            "embed token minted token_id=%s expiration=%s reports=%d datasets=%d "
            "identities=%d request_id=%s",
            token.token_id,
            token.expiration.isoformat(),
            len(report_ids),
            len(dataset_ids),
            len(identities),
            request_id_of(response),
        )
        return token
