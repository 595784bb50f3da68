"""Where the browser packages installed by `npm ci` live.

They are never copied into the repository: the portal and the emulator serve
files straight out of `node_modules`, which `make install` fills from package-lock.json.
"""

from __future__ import annotations

import os
from pathlib import Path

# The npm files each server hands to browsers, by the public name they are served under.
VENDOR_FILES: dict[str, str] = {
    "powerbi.js": "powerbi-client/dist/powerbi.js",
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "pico.min.css": "@picocss/pico/css/pico.min.css",
    "chart.umd.js": "chart.js/dist/chart.umd.js",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
}


class MissingBrowserPackagesError(RuntimeError):
    """Raised when node_modules is absent: the fix is `make install` (npm ci)."""


def node_modules_dir() -> Path:
    """Find node_modules: EMBEDPORTAL_NODE_MODULES_DIR, else the checkout the package runs from."""
    configured = os.environ.get("EMBEDPORTAL_NODE_MODULES_DIR")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules"
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "node_modules"


def vendor_file(name: str) -> Path:
    """The file on disk for a public vendor name, or raise with what to run."""
    relative = VENDOR_FILES[name]
    path = node_modules_dir() / relative
    if not path.is_file():
        raise MissingBrowserPackagesError(
            f"{relative} is missing from {node_modules_dir()}: run `make install` (npm ci)."
        )
    return path
