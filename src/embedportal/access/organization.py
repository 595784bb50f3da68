"""The organization row and the effective Power BI connection.

Every connection field the admin leaves empty on the Settings page falls back to the matching
``EMBEDPORTAL_POWERBI_*`` setting, so a deployment can be configured entirely from the
environment, entirely from the UI, or a mix. The client secret is stored encrypted (Fernet, key
derived from the portal's secret key) and is never shown back.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.orm import Session

from embedportal.access.audit import apply_changes_old_new, record
from embedportal.access.embedding import APP_OWNED, parse_default_embedding
from embedportal.access.microsoft_match import SIGN_IN_METHODS, parse_tenant_list
from embedportal.db.models import Organization, User
from embedportal.i18n import N_
from embedportal.powerbi import PowerBIClient, PowerBIConnection
from embedportal.powerbi.connection import is_guid
from embedportal.settings import Settings
from embedportal.tokens.policy import TokenPolicy, validate_policy_form

ORGANIZATION_ID = 1
Source = Literal["organization", "environment", "missing"]


class SecretUnreadableError(ValueError):
    """The stored client secret cannot be decrypted (the secret key changed)."""


def get_organization(*, session: Session) -> Organization:
    """The single organization row, created with defaults the first time it is needed."""
    organization = session.get(Organization, ORGANIZATION_ID)
    if organization is None:
        organization = Organization(id=ORGANIZATION_ID)
        session.add(organization)
        session.flush()
    return organization


def fernet_for(settings: Settings, purpose: bytes) -> Fernet:
    """Encryption (authenticated) under a key for one purpose only, derived from the secret
    key: the same secret key also signs sessions and flash cookies."""
    digest = hashlib.sha256(
        purpose + b"\0" + settings.secret_key.get_secret_value().encode()
    ).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _fernet(settings: Settings) -> Fernet:
    return fernet_for(settings, b"embedportal/powerbi-client-secret")


def encrypt_secret(*, settings: Settings, secret: str) -> str:
    return _fernet(settings).encrypt(secret.encode()).decode("ascii")


def decrypt_secret(*, settings: Settings, encrypted: str) -> str:
    try:
        return _fernet(settings).decrypt(encrypted.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadableError(
            "The stored client secret cannot be read (was EMBEDPORTAL_SECRET_KEY changed?). "
            "Enter the client secret again."
        ) from None


@dataclass(frozen=True)
class EffectiveConnection:
    """What the portal will use to reach Power BI, and where each part came from.

    ``connection`` is None when something is missing or unreadable; ``problem`` then says what,
    in words an administrator can act on. ``workspace_id`` None means every workspace the
    service principal can see.
    """

    connection: PowerBIConnection | None
    workspace_id: str | None
    tenant_id: str
    client_id: str
    tenant_source: Source
    client_id_source: Source
    secret_source: Source
    workspace_source: Source
    problem: str | None

    @property
    def ready(self) -> bool:
        return self.connection is not None

    @property
    def cache_scope(self) -> str:
        """A short name for this tenant, app and workspace (token cache keys include it)."""
        raw = f"{self.tenant_id}|{self.client_id}|{self.workspace_id or ''}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _pick(own: str, fallback: str | None) -> tuple[str, Source]:
    if own.strip():
        return own.strip(), "organization"
    if fallback:
        return fallback, "environment"
    return "", "missing"


def has_own_connection(organization: Organization) -> bool:
    """True when Admin → Settings names any part of a connection (tenant, client id, secret)."""
    return bool(
        organization.powerbi_tenant_id.strip()
        or organization.powerbi_client_id.strip()
        or organization.powerbi_client_secret_encrypted
    )


@dataclass(frozen=True)
class _Addresses:
    authority_host: str
    api_url: str
    arm_url: str
    subscription_id: str | None
    resource_group: str | None
    capacity_name: str | None

    def connection(
        self, *, tenant_id: str, client_id: str, client_secret: str, with_capacity: bool = True
    ) -> PowerBIConnection:
        """The connection to these addresses (raises ValueError for a malformed value)."""
        capacity = (
            {
                "subscription_id": self.subscription_id,
                "resource_group": self.resource_group,
                "capacity_name": self.capacity_name,
            }
            if with_capacity
            else {}
        )
        return PowerBIConnection(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            authority_host=self.authority_host,
            api_url=self.api_url,
            arm_url=self.arm_url,
            **capacity,
        )


def _addresses(settings: Settings, *, emulated: bool) -> _Addresses:
    """Where a connection is sent: the emulator, only with the emulator's identity; else the
    configured (by default Microsoft's) services. With an emulator standing in, the
    environment's capacity is the emulator's too, and no capacity of a real tenant."""
    base = settings.emulator_url
    environment_capacity = not base or emulated
    return _Addresses(
        authority_host=base if emulated and base else settings.powerbi_authority_host,
        api_url=base if emulated and base else settings.powerbi_api_url,
        arm_url=base if emulated and base else settings.arm_url,
        subscription_id=settings.capacity_subscription_id if environment_capacity else None,
        resource_group=settings.capacity_resource_group if environment_capacity else None,
        capacity_name=settings.capacity_name if environment_capacity else None,
    )


def effective_connection(*, session: Session, settings: Settings) -> EffectiveConnection:
    """The connection in effect. With an emulator standing in (`emulator_url`, set by `serve`),
    its identity fills the connection only while Admin → Settings names none of its own: a
    tenant, client id or secret entered there is a real tenant's, completed from nothing the
    emulator has and sent to the real services (issue #11)."""
    organization = get_organization(session=session)
    own = has_own_connection(organization)
    emulated = settings.emulator_url is not None and not own
    # The environment's identity is the emulator's when one stands in: no fallback for a
    # connection of the organization's own.
    environment = not (settings.emulator_url is not None and own)
    tenant_id, tenant_source = _pick(
        organization.powerbi_tenant_id, settings.powerbi_tenant_id if environment else None
    )
    client_id, client_source = _pick(
        organization.powerbi_client_id, settings.powerbi_client_id if environment else None
    )
    workspace_id, workspace_source = _pick(
        organization.powerbi_workspace_id, settings.powerbi_workspace_id
    )
    problem: str | None = None
    secret = ""
    secret_source: Source = "missing"
    if organization.powerbi_client_secret_encrypted:
        secret_source = "organization"
        try:
            secret = decrypt_secret(
                settings=settings, encrypted=organization.powerbi_client_secret_encrypted
            )
        except SecretUnreadableError as error:
            problem = str(error)
    elif environment and settings.powerbi_client_secret is not None:
        secret = settings.powerbi_client_secret.get_secret_value()
        secret_source = "environment" if secret else "missing"

    missing = [
        label
        for label, value in (
            ("tenant id", tenant_id),
            ("client id", client_id),
            ("client secret", secret),
        )
        if not value
    ]
    connection: PowerBIConnection | None = None
    if problem is None and missing:
        problem = "The Power BI connection is incomplete: " + ", ".join(missing) + " missing."
    if problem is None:
        addresses = _addresses(settings, emulated=emulated)
        try:
            connection = addresses.connection(
                tenant_id=tenant_id, client_id=client_id, client_secret=secret
            )
        except ValueError as error:
            problem = f"The Power BI connection is not valid: {error}"
    return EffectiveConnection(
        connection=connection,
        workspace_id=workspace_id or None,
        tenant_id=tenant_id,
        client_id=client_id,
        tenant_source=tenant_source,
        client_id_source=client_source,
        secret_source=secret_source,
        workspace_source=workspace_source,
        problem=problem,
    )


class PowerBIClients:
    """One long-lived PowerBIClient per connection, so the Entra token and HTTP connections are
    reused across requests. A changed connection (new secret, other tenant) gets a new client;
    all are closed when the app stops."""

    # Waiting out a long 429 inside a request would hold the viewer's request open; longer
    # Retry-Afters reach the browser instead, which honours them.
    RETRY_AFTER_CAP_SECONDS = 5.0

    def __init__(self) -> None:
        self._clients: dict[PowerBIConnection, PowerBIClient] = {}

    def get(self, connection: PowerBIConnection) -> PowerBIClient:
        client = self._clients.get(connection)
        if client is None:
            client = PowerBIClient(connection, retry_after_cap_seconds=self.RETRY_AFTER_CAP_SECONDS)
            self._clients[connection] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


# --- the Settings form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganizationChanges:
    """Validated values of the Settings form; ``client_secret`` None keeps the stored one."""

    name: str
    time_zone: str
    tenant_id: str
    client_id: str
    client_secret: str | None
    clear_client_secret: bool
    workspace_id: str
    policy: TokenPolicy
    # "Nobody may turn on a capacity": the global block over every on-demand start.
    nobody_may_start_capacity: bool = False
    sign_in: SignInChanges | None = None
    # "Require two-step sign-in for administrators" (access/two_step.py); None: leave it as is.
    require_two_step_for_admins: bool | None = None


@dataclass(frozen=True)
class SignInChanges:
    """How people sign in; ``client_secret`` None keeps the stored one."""

    methods: str = "password"
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str | None = None
    clear_client_secret: bool = False
    signup_tenants: str = ""
    # How reports without a choice of their own are embedded (access/embedding.py).
    default_embedding: str = APP_OWNED


def _validate_sign_in(
    form: Mapping[str, str], errors: dict[str, str], *, clear_secret: bool
) -> SignInChanges:
    methods = form.get("sign_in_methods", "").strip() or "password"
    if methods not in SIGN_IN_METHODS:
        errors["sign_in_methods"] = N_("Choose how people sign in.")
    tenant_id = form.get("microsoft_tenant_id", "").strip()
    if tenant_id and (len(tenant_id) > 64 or any(c in tenant_id for c in "/ \\?#")):
        errors["microsoft_tenant_id"] = N_(
            "Enter the tenant (directory) id, a GUID, or organizations for any work account."
        )
    client_id = form.get("microsoft_client_id", "").strip()
    if client_id and not is_guid(client_id):
        errors["microsoft_client_id"] = N_("The client (application) id is a GUID.")
    secret = form.get("microsoft_client_secret", "")
    if len(secret) > 1024:
        errors["microsoft_client_secret"] = N_("The client secret is too long.")
    tenants, bad = parse_tenant_list(form.get("microsoft_signup_tenants", ""))
    if bad:
        errors["microsoft_signup_tenants"] = N_(
            "Each entry is a tenant id, a GUID such as 00000000-0000-0000-0000-000000000000."
        )
    default_embedding = parse_default_embedding(form.get("default_embedding", ""))
    if default_embedding is None:
        errors["default_embedding"] = N_("Choose how reports are embedded.")
    return SignInChanges(
        methods=methods,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret.strip() or None,
        clear_client_secret=clear_secret,
        signup_tenants=" ".join(sorted(tenants)),
        default_embedding=default_embedding or APP_OWNED,
    )


def validate_organization_form(
    form: Mapping[str, str],
    *,
    clear_client_secret: bool,
    interaction_min_age_minutes: int,
    nobody_may_start_capacity: bool = False,
    clear_microsoft_client_secret: bool = False,
    require_two_step_for_admins: bool | None = None,
) -> tuple[OrganizationChanges | None, dict[str, str]]:
    """(changes, {}) or (None, {field: message}). Messages are English source strings.

    `form` holds the typed fields by name; `clear_client_secret` is the "remove the stored
    secret" box and `nobody_may_start_capacity` the global block's box, ticked or not."""
    errors: dict[str, str] = {}
    name = form.get("name", "").strip()
    if not name:
        errors["name"] = N_("Enter the organization's name.")
    elif len(name) > 200:
        errors["name"] = N_("The name can have at most 200 characters.")

    time_zone = form.get("time_zone", "").strip()
    if not time_zone:
        errors["time_zone"] = N_("Choose a time zone, e.g. Europe/Lisbon or UTC.")
    else:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors["time_zone"] = N_("Unknown time zone. Use a name like Europe/Lisbon or UTC.")

    tenant_id = form.get("powerbi_tenant_id", "").strip()
    if tenant_id and (len(tenant_id) > 64 or any(c in tenant_id for c in "/ \\?#")):
        errors["powerbi_tenant_id"] = N_(
            "Enter the tenant (directory) id, a GUID such as "
            "00000000-0000-0000-0000-000000000000, or a domain such as contoso.onmicrosoft.com."
        )
    client_id = form.get("powerbi_client_id", "").strip()
    if client_id and not is_guid(client_id):
        errors["powerbi_client_id"] = N_("The client (application) id is a GUID.")
    workspace_id = form.get("powerbi_workspace_id", "").strip()
    if workspace_id and not is_guid(workspace_id):
        errors["powerbi_workspace_id"] = N_("The workspace id is a GUID (see the workspace's URL).")
    secret = form.get("powerbi_client_secret", "")
    if len(secret) > 1024:
        errors["powerbi_client_secret"] = N_("The client secret is too long.")

    sign_in = _validate_sign_in(form, errors, clear_secret=clear_microsoft_client_secret)
    policy_result = validate_policy_form(
        form, interaction_min_age_minutes=interaction_min_age_minutes
    )
    errors.update(policy_result.errors)
    if errors or policy_result.policy is None:
        return None, errors
    return (
        OrganizationChanges(
            name=name,
            time_zone=time_zone,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret.strip() or None,
            clear_client_secret=clear_client_secret,
            workspace_id=workspace_id,
            policy=policy_result.policy,
            nobody_may_start_capacity=nobody_may_start_capacity,
            sign_in=sign_in,
            require_two_step_for_admins=require_two_step_for_admins,
        ),
        {},
    )


def update_organization(
    *,
    session: Session,
    settings: Settings,
    changes: OrganizationChanges,
    actor: User | None,
) -> list[str]:
    """Save the form's values; audit each change as old → new (the secret only as "changed").
    Returns the names of the changed fields."""
    organization = get_organization(session=session)
    new_values: dict[str, object] = {
        "name": changes.name,
        "time_zone": changes.time_zone,
        "powerbi_tenant_id": changes.tenant_id,
        "powerbi_client_id": changes.client_id,
        "powerbi_workspace_id": changes.workspace_id,
        "token_lifetime_minutes": changes.policy.lifetime_minutes,
        "refresh_margin_minutes": changes.policy.margin_minutes,
        "refresh_every_minutes": changes.policy.refresh_every_minutes,
        "nobody_may_start_capacity": changes.nobody_may_start_capacity,
    }
    if changes.require_two_step_for_admins is not None:
        new_values["require_two_step_for_admins"] = changes.require_two_step_for_admins
    detail: dict[str, object] = {**apply_changes_old_new(organization, new_values)}
    if changes.client_secret is not None:
        organization.powerbi_client_secret_encrypted = encrypt_secret(
            settings=settings, secret=changes.client_secret
        )
        detail["powerbi_client_secret"] = "client secret changed"
    elif changes.clear_client_secret and organization.powerbi_client_secret_encrypted:
        organization.powerbi_client_secret_encrypted = ""
        detail["powerbi_client_secret"] = "client secret removed"
    if changes.sign_in is not None:
        detail.update(_apply_sign_in(organization, settings=settings, changes=changes.sign_in))
    if detail:
        session.flush()
        record(
            session=session,
            actor=actor,
            action="organization.changed",
            target_type="organization",
            target_id=str(organization.id),
            detail=detail,
        )
    return list(detail)


def _apply_sign_in(
    organization: Organization, *, settings: Settings, changes: SignInChanges
) -> dict[str, object]:
    detail: dict[str, object] = dict(
        apply_changes_old_new(
            organization,
            {
                "sign_in_methods": changes.methods,
                "microsoft_tenant_id": changes.tenant_id,
                "microsoft_client_id": changes.client_id,
                "microsoft_signup_tenants": changes.signup_tenants,
                "default_embedding": changes.default_embedding,
            },
        )
    )
    if changes.client_secret is not None:
        organization.microsoft_client_secret_encrypted = encrypt_secret(
            settings=settings, secret=changes.client_secret
        )
        detail["microsoft_client_secret"] = "client secret changed"
    elif changes.clear_client_secret and organization.microsoft_client_secret_encrypted:
        organization.microsoft_client_secret_encrypted = ""
        detail["microsoft_client_secret"] = "client secret removed"
    return detail


def candidate_connection(
    *, session: Session, settings: Settings, form: Mapping[str, str]
) -> PowerBIConnection:
    """The connection the Settings form describes (blank fields: what is in effect now), for
    "Test connection" before saving. Raises ValueError with a message to show."""
    current = effective_connection(session=session, settings=settings)
    typed = {
        name: form.get(name, "").strip()
        for name in ("powerbi_tenant_id", "powerbi_client_id", "powerbi_client_secret")
    }
    # Something typed in is a real tenant's: nothing of an emulator standing in completes it,
    # and it is tested against the real services.
    emulator_stands_in = (
        settings.emulator_url is not None
        and current.connection is not None
        and current.tenant_source == "environment"
    )
    keep_current = not (emulator_stands_in and any(typed.values()))
    tenant_id = typed["powerbi_tenant_id"] or (current.tenant_id if keep_current else "")
    client_id = typed["powerbi_client_id"] or (current.client_id if keep_current else "")
    secret = typed["powerbi_client_secret"]
    if not secret and keep_current and current.connection is not None:
        secret = current.connection.client_secret
    if not (tenant_id and client_id and secret):
        raise ValueError(N_("Enter the tenant id, client id and client secret first."))
    addresses = _addresses(settings, emulated=emulator_stands_in and keep_current)
    return addresses.connection(
        tenant_id=tenant_id, client_id=client_id, client_secret=secret, with_capacity=False
    )
