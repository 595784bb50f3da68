"""Everything one emulator app holds: settings, signer, demo content, capacities, counters.

One `EmulatorState` lives on `app.state.emulator`; nothing is global, so two apps in one
process (tests) never share tokens, counters or capacity state.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from embedportal.emulator.capacity import (
    FABRIC,
    POWERBI_DEDICATED,
    Capacity,
    Operation,
    Provider,
)
from embedportal.emulator.demo import CapacitySlot, DemoContent, demo_content
from embedportal.emulator.directory import Directory, DirectoryUser, SignInGrants
from embedportal.emulator.query import Filter, Result, Security, VisualQuery
from embedportal.emulator.settings import EmulatorSettings
from embedportal.emulator.tokens import IdTokenSigner, Signer

CAPACITY_LOCATION = "West Europe"
CAPACITY_LOCATION_SLUG = "westeurope"


def powerbi_capacity_id(resource_id: str) -> str:
    """The Power BI REST id of the capacity with this ARM resource id (lower case; the
    workspace's `capacityId` spells it in capitals, so clients compare ids case-insensitively)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, resource_id))


@dataclass(slots=True)
class Counters:
    entra_tokens_issued: int = 0
    powerbi_requests: int = 0
    throttled_requests: int = 0
    generate_token_calls: int = 0
    embed_tokens_issued: int = 0
    data_queries: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "entraTokensIssued": self.entra_tokens_issued,
            "powerBiRequests": self.powerbi_requests,
            "throttledRequests": self.throttled_requests,
            "generateTokenCalls": self.generate_token_calls,
            "embedTokensIssued": self.embed_tokens_issued,
            "dataQueries": self.data_queries,
        }


@dataclass(slots=True)
class RequestBudget:
    """A sliding-window request budget per client: `limit` requests per `window` seconds."""

    limit: int
    window: float
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def take(self, client: str, now: float) -> float | None:
        """Count one request; None if allowed, else the seconds to wait before retrying."""
        if self.limit <= 0:
            return None
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return max(seen[0] + self.window - now, 0.0)
        seen.append(now)
        return None


class QueryCache:
    """Answers to recent visual queries: the data is immutable, so equal questions get equal
    answers (many viewers of one dashboard cost one evaluation)."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], Result] = OrderedDict()

    def get_or_compute(
        self,
        key: tuple[str, VisualQuery, tuple[Filter, ...], Security],
        compute: Callable[[], Result],
    ) -> Result:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        result = compute()
        self._items[key] = result
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return result


class EmulatorState:
    def __init__(self, settings: EmulatorSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.signer = Signer(settings.signing_key.get_secret_value())
        self.content: DemoContent = demo_content()
        self.counters = Counters()
        self.budget = RequestBudget(settings.request_budget, settings.request_budget_window_seconds)
        self.random = random.Random()
        self.capacity = self._new_capacity(
            settings.capacity_name, settings.capacity_resource_id, POWERBI_DEDICATED, "A1"
        )
        self.fabric_capacity = self._new_capacity(
            settings.fabric_capacity_name, settings.fabric_capacity_resource_id, FABRIC, "F2"
        )
        # Keyed by the demo content's capacity slots; the order is the order of every listing.
        self.capacities: dict[CapacitySlot, Capacity] = {
            "dedicated": self.capacity,
            "fabric": self.fabric_capacity,
        }
        self.operations: dict[str, Operation] = {}
        self.query_cache = QueryCache()
        self.directory = Directory(self._directory_users(), tenant_id=settings.tenant_id)
        self.grants = SignInGrants()
        self.id_token_signer = IdTokenSigner()

    def _directory_users(self) -> list[DirectoryUser]:
        """The settings' people, their workspaces named by id or name (``*``: all of them)."""
        by_name = {w.name.casefold(): w.id for w in self.content.workspaces.values()}
        users = []
        for person in self.settings.directory_users:
            ids: set[str] = set()
            for wanted in person.workspaces:
                if wanted == "*":
                    ids.update(self.content.workspaces)
                elif wanted.lower() in self.content.workspaces:
                    ids.add(wanted.lower())
                elif wanted.casefold() in by_name:
                    ids.add(by_name[wanted.casefold()])
            users.append(
                DirectoryUser(
                    person.email, person.name, frozenset(ids), rls_roles=tuple(person.rls_roles)
                )
            )
        return users

    def _new_capacity(self, name: str, resource_id: str, provider: Provider, sku: str) -> Capacity:
        settings = self.settings
        return Capacity(
            name=name,
            resource_id=resource_id,
            location=CAPACITY_LOCATION,
            sku=sku,
            created_at=self.clock(),
            transition_seconds=settings.capacity_transition_seconds,
            administrators=(f"app:{settings.client_id}@{settings.tenant_id}",),
            provider=provider,
            powerbi_id=powerbi_capacity_id(resource_id),
        )

    def now(self) -> float:
        return self.clock()

    def capacity_for_workspace(self, workspace_id: str) -> Capacity | None:
        """The capacity a workspace is assigned to."""
        workspace = self.content.workspaces.get(workspace_id.lower())
        return None if workspace is None else self.capacities[workspace.capacity]

    def capacity_named(self, name: str, provider: Provider | None = None) -> Capacity | None:
        """The capacity with this ARM name (of this provider, when given)."""
        wanted = name.lower()
        for capacity in self.capacities.values():
            if capacity.name == wanted and (provider is None or capacity.provider is provider):
                return capacity
        return None

    def entra_lifetime(self) -> float:
        low = self.settings.entra_min_lifetime_seconds
        high = self.settings.entra_max_lifetime_seconds
        return self.random.uniform(low, high)

    def stats(self) -> dict[str, object]:
        now = self.now()
        return {
            **self.counters.as_json(),
            "capacities": {c.name: c.meter(now) for c in self.capacities.values()},
        }

    def base_url(self, request: Request) -> str:
        """Where clients reach this emulator: `public_url`, else the request's own base URL."""
        if self.settings.public_url:
            return self.settings.public_url
        return str(request.base_url).rstrip("/")


def get_state(request: Request) -> EmulatorState:
    state = request.app.state.emulator
    assert isinstance(state, EmulatorState)
    return state


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
