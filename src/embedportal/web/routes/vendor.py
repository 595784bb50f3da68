from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from embedportal.assets import VENDOR_FILES, MissingBrowserPackagesError, vendor_file

router = APIRouter(tags=["static"], include_in_schema=False)


@router.get("/static/vendor/{name}")
def vendor(name: str) -> FileResponse:
    """Browser packages from node_modules (powerbi-client, htmx, the CSS library)."""
    if name not in VENDOR_FILES:
        raise HTTPException(status_code=404, detail="No such vendor file.")
    try:
        path = vendor_file(name)
    except MissingBrowserPackagesError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
