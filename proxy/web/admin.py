"""``POST /admin/refresh``: refetch the catalog now, for operators."""

from __future__ import annotations

import math

from aiohttp import web

from proxy.catalog.errors import RefreshTooSoonError
from proxy.catalog.service import CATALOG
from proxy.settings import SETTINGS
from proxy.web.api import catalog_fields
from proxy.web.auth import bearer_matches, unauthorized
from proxy.web.errors import json_error


async def refresh(request: web.Request) -> web.Response:
    """Fetch a new catalog (coalesced, at most once per interval); the body is ignored."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return json_error(404, "not_found", "the admin API is off (PROXY_ADMIN_TOKEN is not set)")
    if not bearer_matches(request.headers.get("Authorization"), (token,)):
        return unauthorized("the admin token is required: Authorization: Bearer <token>")
    try:
        lookup = await request.app[CATALOG].admin_refresh()
    except RefreshTooSoonError as exc:
        retry_after = str(max(math.ceil(exc.retry_after), 1))
        return json_error(429, "too_many_requests", str(exc), headers={"Retry-After": retry_after})
    return web.json_response(
        {
            "refreshed": True,
            "collapsed": lookup.collapsed,
            "etag": lookup.entry.etag,
            "catalog": catalog_fields(lookup),
        }
    )
