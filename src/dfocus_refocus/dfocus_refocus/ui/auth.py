"""Who may talk to the ui server: loopback-only by default; anywhere else only with a token.

The token travels as `?token=` (a link the user opens once), an `Authorization: Bearer` header, or
the cookie the server sets after a valid `?token=` so that the page's own requests and its WebSocket
(browsers cannot set headers on those) carry it. A WebSocket must also come from the page's own
origin, so that another web site open in the same browser cannot drive the graph. Without a token,
every request must also name this machine in its Host header (`host_allowed`): a foreign name
pointed at 127.0.0.1 by its DNS (DNS rebinding) is same-origin to the browser and would pass.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

COOKIE = "dfocus_ui_token"


class UiConfigError(ValueError):
    """The server cannot start with these settings (e.g. a public address without a token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse to serve beyond this machine without a token."""
    if not host:
        raise UiConfigError("host must not be empty (use 127.0.0.1 for this machine only)")
    if not is_loopback(host) and not token:
        raise UiConfigError(
            f"refusing to serve on {host}: a non-loopback address needs the 'token' parameter "
            "(anyone who can reach the port could otherwise drive the graph)"
        )
    if token and len(token) < 8:
        raise UiConfigError("token must be at least 8 characters long")


def presented_token(query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    if "token" in query:
        return query["token"]
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer ") :]
    return cookies.get(COOKIE)


def token_ok(expected: str, presented: str | None) -> bool:
    """True when no token is configured, or the presented one matches (constant-time compare)."""
    if not expected:
        return True
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """A browser's Origin header names the page that opened the request; it must be ours."""
    if origin is None:
        return True  # not a browser (curl, scripts): the token (if any) is the only guard
    if not host_header:
        return False
    try:
        return urlsplit(origin).netloc.lower() == host_header.lower()
    except ValueError:  # an unbalanced IPv6 bracket
        return False


def host_allowed(host_header: str | None, bind_host: str) -> bool:
    """True when the Host header names a loopback address or `bind_host` (any port)."""
    if not host_header:
        return False
    try:
        hostname = urlsplit(f"//{host_header}").hostname
    except ValueError:  # an unbalanced IPv6 bracket
        return False
    if not hostname:
        return False
    return is_loopback(hostname) or hostname == bind_host.lower().strip("[]")
