"""The one client embedportal uses for Power BI, Entra ID and Azure Resource Manager.

The same code talks to Microsoft's services and to the built-in emulator; only the base URLs in
:class:`PowerBIConnection` differ. See docs/powerbi-client.md.
"""

from embedportal.powerbi.arm import CapacityClient
from embedportal.powerbi.client import PowerBIClient
from embedportal.powerbi.connection import (
    ARM_SCOPE,
    CAPACITY_PROVIDERS,
    FABRIC,
    POWERBI_DEDICATED,
    POWERBI_SCOPE,
    CapacityCoordinates,
    CapacityProvider,
    PowerBIConnection,
)
from embedportal.powerbi.entra import AccessToken, EntraTokenProvider
from embedportal.powerbi.errors import (
    CapacityNotFoundError,
    CapacityOperationInProgressError,
    CapacityOperationTimeoutError,
    CapacityPermissionError,
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
    PowerBICapacity,
    ReportInfo,
    Workspace,
)

__all__ = [
    "ARM_SCOPE",
    "CAPACITY_PROVIDERS",
    "FABRIC",
    "POWERBI_DEDICATED",
    "POWERBI_SCOPE",
    "AccessToken",
    "CapacityClient",
    "CapacityCoordinates",
    "CapacityInfo",
    "CapacityNotFoundError",
    "CapacityOperationInProgressError",
    "CapacityOperationTimeoutError",
    "CapacityPermissionError",
    "CapacityProvider",
    "DatasetInfo",
    "EffectiveIdentity",
    "EmbedToken",
    "EntraTokenProvider",
    "PowerBIAuthError",
    "PowerBIBadRequestError",
    "PowerBICapacity",
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
