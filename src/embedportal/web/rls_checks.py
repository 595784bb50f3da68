"""The RLS try-out as the admin forms run it: from a route's worker thread, on the event loop
where the Power BI clients live (access/rls_check.py says what is tried)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.from_thread
from sqlalchemy.orm import Session

from embedportal.access.organization import PowerBIClients, effective_connection
from embedportal.access.rls_check import RlsCheck, RlsTrial, try_identities
from embedportal.settings import Settings


def check_in_worker(
    *, session: Session, settings: Settings, clients: PowerBIClients, trials: Sequence[RlsTrial]
) -> RlsCheck:
    """Try the identities; for a plain (``def``) route, which runs in a worker thread. Nothing
    to try: no call at all. No connection: every trial is unchecked."""
    if not trials:
        return RlsCheck()
    connection = effective_connection(session=session, settings=settings)
    minter = clients.get(connection.connection) if connection.connection is not None else None
    return anyio.from_thread.run(functools.partial(try_identities, minter=minter, trials=trials))


@dataclass(frozen=True)
class RolesRefused:
    """Why RLS settings may not be saved as they are, and whether saving without the check is
    the way on (Power BI could not be asked, as opposed to refused them)."""

    reason: str
    unchecked: bool


def roles_refused(
    *,
    session: Session,
    settings: Settings,
    clients: PowerBIClients,
    trials: Sequence[RlsTrial],
    save_unchecked: bool,
) -> RolesRefused | None:
    """Try the identities a change would give; None: save it."""
    check = check_in_worker(session=session, settings=settings, clients=clients, trials=trials)
    if check.refused:
        return RolesRefused(" ".join(check.messages()), unchecked=False)
    if check.unchecked and not save_unchecked:
        return RolesRefused(check.unchecked_message(), unchecked=True)
    return None
