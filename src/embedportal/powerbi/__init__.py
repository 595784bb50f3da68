"""The one client embedportal uses for Power BI, Entra ID and Azure Resource Manager.

The same code talks to Microsoft's services and to the built-in emulator; only the base URLs in
:class:`PowerBIConnection` differ. See docs/powerbi-client.md.
"""

from embedportal.powerbi.arm import CapacityClient
from embedportal.powerbi.client import PowerBIClient
from embedportal.powerbi.connection import ARM_SCOPE, POWERBI_SCOPE, PowerBIConnection
from embedportal.powerbi.entra import AccessToken, EntraTokenProvider
from embedportal.powerbi.errors import (
    PowerBIAuthError,
    PowerBIBadRequestError,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIProtocolError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.powerbi.models import (
    CapacityInfo,
    DatasetInfo,
    EffectiveIdentity,
    EmbedToken,
    ReportInfo,
    Workspace,
)

__all__ = [
    "ARM_SCOPE",
    "POWERBI_SCOPE",
    "AccessToken",
    "CapacityClient",
    "CapacityInfo",
    "DatasetInfo",
    "EffectiveIdentity",
    "EmbedToken",
    "EntraTokenProvider",
    "PowerBIAuthError",
    "PowerBIBadRequestError",
    "PowerBIClient",
    "PowerBIConnection",
    "PowerBIError",
    "PowerBIForbiddenError",
    "PowerBINotFoundError",
    "PowerBIProtocolError",
    "PowerBIThrottledError",
    "PowerBIUnavailableError",
    "ReportInfo",
    "Workspace",
]
