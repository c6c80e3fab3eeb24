"""What a request says about its client: a clean address and a readable device."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ua_parser import Parser, load_builtins
from ua_parser.regex import Resolver


@lru_cache(maxsize=4096)  # on every signed-in request; clients come back
def clean_ip(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None  # a unix socket peer or nothing at all


@lru_cache(maxsize=1)
def _parser() -> Parser:
    """uap-core's browser and system rules, without its device rules (brands and models of
    phones, which the name never shows): 13 MiB less in every worker."""
    browsers, systems, _devices = load_builtins()
    return Parser(Resolver((browsers, systems, [])))


@lru_cache(maxsize=1024)
def device_name(user_agent: str | None) -> str:
    """A readable device, such as "Firefox on Linux", from a User-Agent header."""
    result = _parser().parse(user_agent or "")
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os and result.os.family != "Other" else None
    if browser and browser != "Other":
        return f"{browser} on {system}" if system else browser
    return f"A browser on {system}" if system else "Unknown device"
