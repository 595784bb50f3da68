"""Entra ID, as much of it as a confidential client needs: the v2.0 token endpoint (client
credentials here; people's authorization codes and refresh tokens in `signin.py`), OpenID
discovery, the tenant's signing keys and instance discovery.

Errors carry Entra's AADSTS codes and shapes, so client code sees what it would see in
production. Tokens are JWTs signed by the emulator (HS256); see `tokens.py`.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from urllib.parse import unquote_plus, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedportal.emulator import signin
from embedportal.emulator.errors import EmulatorError, entra_error
from embedportal.emulator.state import EmulatorState, get_state
from embedportal.emulator.tokens import AUDIENCE_BY_SCOPE, POWERBI_SCOPE

router = APIRouter()

_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
_GRANTS = frozenset({"client_credentials", "authorization_code", "refresh_token"})


def issuer(base_url: str, tenant_id: str) -> str:
    return f"{base_url}/{tenant_id}/v2.0"


def service_principal_object_id(client_id: str, tenant_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(tenant_id), f"service-principal:{client_id}"))


def _check_tenant(state: EmulatorState, tenant: str, base_url: str) -> None:
    if tenant.lower() != state.settings.tenant_id:
        raise entra_error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud.",
            base_url=base_url,
        )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


@router.post("/{tenant}/oauth2/v2.0/token")
async def token(tenant: str, request: Request) -> JSONResponse:
    """The token endpoint: checks tenant, client and secret, then the grant: client
    credentials (scope), an authorization code or a refresh token."""
    state = get_state(request)
    base_url = state.base_url(request)
    _check_tenant(state, tenant, base_url)
    try:
        form = await request.form()
    except StarletteHTTPException:  # a malformed multipart body
        raise entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
            base_url=base_url,
        ) from None
    fields = {key: value for key, value in form.items() if isinstance(value, str)}

    def missing(name: str) -> EmulatorError:
        return entra_error(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
            base_url=base_url,
        )

    grant_type = fields.get("grant_type")
    if not grant_type:
        raise missing("grant_type")
    if grant_type not in _GRANTS:
        raise entra_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'. The emulator "
            "supports client_credentials, authorization_code and refresh_token.",
            base_url=base_url,
        )
    basic = _basic_credentials(request)
    client_id = fields.get("client_id") or (basic[0] if basic else None)
    secret = fields.get("client_secret") or (basic[1] if basic else None)
    if not client_id:
        raise missing("client_id")
    settings = state.settings
    if client_id.lower() != settings.client_id:
        raise entra_error(
            401,
            "invalid_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{settings.tenant_id}'.",
            base_url=base_url,
        )
    if not secret:
        raise entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
            base_url=base_url,
        )
    if secret != settings.client_secret:
        raise entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{settings.client_id}'.",
            base_url=base_url,
        )
    if grant_type == "authorization_code":
        return signin.authorization_code_grant(
            state=state, fields=fields, client_id=client_id, base_url=base_url
        )
    if grant_type == "refresh_token":
        return signin.refresh_token_grant(
            state=state, fields=fields, client_id=client_id, base_url=base_url
        )
    scope = fields.get("scope", "").strip()
    if not scope:
        raise missing("scope")
    audience = AUDIENCE_BY_SCOPE.get(scope)
    if audience is None:
        raise entra_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            f"have a scope value with /.default suffixed to the resource identifier; this "
            f"emulator knows {POWERBI_SCOPE} and https://management.azure.com/.default.",
            base_url=base_url,
        )

    now = state.now()
    lifetime = state.entra_lifetime()
    expires_at = math.floor(now + lifetime)
    object_id = service_principal_object_id(settings.client_id, settings.tenant_id)
    claims = {
        "aud": audience,
        "iss": issuer(base_url, settings.tenant_id),
        "iat": math.floor(now),
        "nbf": math.floor(now),
        "exp": expires_at,
        "appid": settings.client_id,
        "appidacr": "1",
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": settings.tenant_id,
        "uti": str(uuid.uuid4()),
        "ver": "1.0",
    }
    access_token = state.signer.entra_token(claims)
    state.counters.entra_tokens_issued += 1
    expires_in = max(0, math.floor(expires_at - now))
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        },
        headers=_NO_STORE,
    )


@router.get("/{tenant}/v2.0/.well-known/openid-configuration")
async def openid_configuration(tenant: str, request: Request) -> JSONResponse:
    """OpenID Connect discovery for the tenant: what msal reads to find the token endpoint."""
    state = get_state(request)
    base_url = state.base_url(request)
    _check_tenant(state, tenant, base_url)
    tenant_id = state.settings.tenant_id
    root = f"{base_url}/{tenant_id}"
    return JSONResponse(
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer(base_url, tenant_id),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "nonce",
                "tid",
                "oid",
                "name",
                "email",
                "preferred_username",
            ],
            "grant_types_supported": sorted(_GRANTS),
            "code_challenge_methods_supported": ["S256", "plain"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": urlsplit(base_url).netloc,
        }
    )


@router.get("/{tenant}/discovery/v2.0/keys")
async def keys(tenant: str, request: Request) -> JSONResponse:
    """The key id tokens are signed with (access tokens are HMAC-signed and checked by the
    emulator only, as Microsoft's are checked by the resource they are for)."""
    state = get_state(request)
    _check_tenant(state, tenant, state.base_url(request))
    return JSONResponse(state.id_token_signer.jwks())


@router.get("/common/discovery/instance")
async def instance_discovery(request: Request) -> JSONResponse:
    """Instance discovery: where the tenant's OpenID configuration lives on this instance."""
    state = get_state(request)
    base_url = state.base_url(request)
    endpoint = request.query_params.get("authorization_endpoint", "")
    parts = urlsplit(endpoint)
    segments = [segment for segment in parts.path.split("/") if segment]
    if not parts.netloc or not segments:
        raise entra_error(
            400,
            "invalid_instance",
            50049,
            "Unknown or invalid instance: pass ?authorization_endpoint="
            "https://<host>/<tenant>/oauth2/v2.0/authorize.",
            base_url=base_url,
        )
    host = urlsplit(base_url).netloc
    return JSONResponse(
        {
            "tenant_discovery_endpoint": (
                f"{base_url}/{segments[0]}/v2.0/.well-known/openid-configuration"
            ),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )
