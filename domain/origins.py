"""Origins (scheme, host, port): where the service may send a browser back to (rules §7).

A checkout's return URLs are chosen by the caller but followed by the payer's browser, so a
foreign one would turn our checkout into a redirect to any site. Only URLs on the public base
URL's origin are accepted. The comparison is exact and strict on purpose: anything a browser
could read differently from ``urllib`` (userinfo, backslashes, controls, odd ports) is refused
rather than interpreted.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL on the origin of ``base``."""
    mine, theirs = _origin(base), _origin(url)
    return mine is not None and theirs is not None and mine == theirs


def _origin(url: str) -> tuple[str, str, int] | None:
    if "\\" in url or any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return None
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    if "%" in parts.netloc or parts.hostname.endswith("."):
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]
