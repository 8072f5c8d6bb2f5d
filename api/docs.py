"""The interactive reference at /docs: Swagger UI over /openapi.json.

Every file the page loads is served from here, out of the swagger-ui-py package (which
bundles Swagger UI's built files): no CDN, so it works on a machine with no internet,
and the page's Content-Security-Policy can allow this origin only. The page needs no
key; "Try it out" sends the x-api-key the reader types into "Authorize".
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.problems import Problem

PACKAGE = "swagger_ui"
# The only files served: a fixed list, looked up by name, so no path from a request
# ever reaches the file system.
SHIPPED = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "index.css",
    "favicon-32x32.png",
    "favicon-16x16.png",
)
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
# Images are compressed already.
COMPRESSIBLE = frozenset({".js", ".css"})

# In a file of its own, not inline: the page's policy allows scripts from 'self' only.
INIT_NAME = "docs.js"
INIT_JS = b"""\
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    // Swagger UI would otherwise show a badge from the public validator's host.
    validatorUrl: null,
    // The key lives in the page's memory only, never in the browser's storage.
    persistAuthorization: false,
    displayRequestDuration: true,
  });
});
"""

PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>endcontact API reference</title>
<link rel="icon" type="image/png" sizes="32x32" href="{static}/favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{static}/favicon-16x16.png">
<link rel="stylesheet" href="{static}/swagger-ui.css">
<link rel="stylesheet" href="{static}/index.css">
</head>
<body>
<noscript>This reference needs JavaScript; the document is at
<a href="openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="{static}/{init}"></script>
</body>
</html>
"""

# Swagger UI's styles carry SVG icons as data: URLs; it fetches the document and sends
# "Try it out" requests to this origin (connect-src). Nothing else is allowed.
POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small, and names the assets' version: always revalidated.
    "Cache-Control": "no-cache",
}
# An asset's URL carries the version of all of them, so it never changes under a URL.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


@dataclass(frozen=True)
class Bundle:
    version: str
    assets: dict[str, Asset]
    page: bytes


def swagger_ui_folder() -> Path:
    """The package's static folder, found without importing the package (its
    __init__ pulls in web-framework glue this service does not use)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {PACKAGE} package (swagger-ui-py) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _asset(name: str, body: bytes) -> Asset:
    suffix = Path(name).suffix
    digest = hashlib.sha256(body).hexdigest()[:16]
    return Asset(
        body=body,
        gzipped=gzip.compress(body, 6, mtime=0) if suffix in COMPRESSIBLE else None,
        media_type=MEDIA_TYPES[suffix],
        # Weak: the same for the plain and the gzipped bytes.
        etag=f'W/"{digest}"',
    )


@functools.cache
def bundle() -> Bundle:
    """Read and compress once per process, on the first request for the page."""
    folder = swagger_ui_folder()
    contents = {name: (folder / name).read_bytes() for name in SHIPPED}
    contents[INIT_NAME] = INIT_JS
    version = hashlib.sha256(b"".join(contents[name] for name in sorted(contents)))
    short = version.hexdigest()[:12]
    # Relative: the page works behind a proxy that mounts the service under a prefix.
    page = PAGE.format(static=f"docs/static/{short}", init=INIT_NAME)
    return Bundle(
        version=short,
        assets={name: _asset(name, body) for name, body in contents.items()},
        page=page.encode(),
    )


async def loaded() -> Bundle:
    # In a thread: the first call reads and compresses about 1.7 MB, which would
    # hold up every other request on the event loop.
    return await asyncio.to_thread(bundle)


def accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def _matches(etag: str, header: str) -> bool:
    return any(tag.strip() in (etag, "*") for tag in header.split(","))


async def page(request: Request) -> Response:
    found = await loaded()
    return Response(found.page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def to_page(request: Request) -> Response:
    """/docs/ is where a reader often types it: served as is, the page's relative links
    would miss (docs/docs/static/...). Relative, to keep a proxy's prefix, and a fixed
    target: never a host from the request (redirect_slashes is off for that, api.app)."""
    return Response(status_code=308, headers={"Location": "../docs"})


async def asset(request: Request) -> Response:
    found = await loaded()
    file = found.assets.get(request.path_params["name"])
    # Another version is another deployment's file: a 404 rather than the wrong bytes
    # cached for a year.
    if file is None or request.path_params["version"] != found.version:
        raise Problem(404, "No such file.")
    headers = {
        "Cache-Control": IMMUTABLE,
        "ETag": file.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(file.etag, request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    body = file.body
    if file.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", "")):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=file.media_type, headers=headers)


# Not API operations, so not in /openapi.json (include_in_schema=False).
ROUTES = [
    Route("/docs", page, methods=["GET"], include_in_schema=False),
    Route("/docs/", to_page, methods=["GET"], include_in_schema=False),
    Route("/docs/static/{version}/{name}", asset, methods=["GET"], include_in_schema=False),
]
