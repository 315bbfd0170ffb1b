"""
Device details: the client IP address and user agent a session was last used
from, recorded only with SQL_SESSIONS_DEVICE_DETAILS = True.

The IP address is truncated to its network (SQL_SESSIONS_IPV4_PREFIX,
default /24, and SQL_SESSIONS_IPV6_PREFIX, default /48) before it is stored,
so the table never holds a whole address unless the project asks for one
(32 and 128). The user agent is cut to USER_AGENT_MAX_LENGTH characters, with
control characters removed. Both come from REMOTE_ADDR and the User-Agent
header: behind a proxy, set REMOTE_ADDR from the header your proxy vouches
for (Django does not trust X-Forwarded-For on its own, and neither do we).

People read a user agent as device_name() puts it: "Firefox 140 on Windows",
from ua-parser (the optional extra django-sql-sessions[devices]) rather than
regular expressions of our own, which would go stale with every browser
release. Without ua-parser, the user agent itself, shortened.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING

from django.http import HttpRequest
from django.utils.text import Truncator

from django_sql_sessions import conf
from django_sql_sessions.models import USER_AGENT_MAX_LENGTH

if TYPE_CHECKING:
    from ua_parser import PartialResult


@dataclasses.dataclass(frozen=True)
class Device:
    ip: str | None
    user_agent: str | None


def device_from_request(request: HttpRequest) -> Device | None:
    """The details to store for this request, or None when they are not recorded."""
    if not conf.DEVICE_DETAILS.get():
        return None
    return Device(
        ip=anonymize_ip(request.META.get("REMOTE_ADDR")),
        user_agent=clean_user_agent(request.META.get("HTTP_USER_AGENT")),
    )


def anonymize_ip(value: object) -> str | None:
    """Return the address's network under the configured prefix, or None."""
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None  # not an address (a test client, a misconfigured proxy)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:192.0.2.1 is an IPv4 client
    bits = (conf.IPV4_PREFIX if address.version == 4 else conf.IPV6_PREFIX).get()
    if not bits:
        return None
    # From the integer, which drops an IPv6 zone ("%eth0") along the way; the
    # network class by the address's version, since ip_network() would take
    # a small IPv6 address (::203.0.113.7) for an IPv4 one.
    network_class = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
    network = network_class((int(address), bits), strict=False)
    return str(network.network_address)


def clean_user_agent(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    printable = "".join(char for char in value if char.isprintable()).strip()
    return printable[:USER_AGENT_MAX_LENGTH] or None


# A user agent shown as itself (without ua-parser, or one it does not know)
# is cut to this many characters: whole ones run to 255 and say little more.
RAW_NAME_LENGTH = 40
UNKNOWN_DEVICE = "Unknown device"


def device_name(user_agent: str | None, *, versions: bool = True) -> str:
    """
    The browser and system behind a user agent, for people to read:
    "Firefox 140 on Windows" ("Firefox on Windows" without versions). Without
    ua-parser installed, or for a user agent it does not recognise, the user
    agent itself cut to RAW_NAME_LENGTH characters; "Unknown device" when
    none was recorded. User agents are whatever the client sends: a guess,
    not an identification.
    """
    if not user_agent:
        return UNKNOWN_DEVICE
    parsed = _parse(user_agent)
    browser = system = None
    if parsed is not None:
        agent, os = parsed.user_agent, parsed.os
        if agent is not None and agent.family != "Other":
            browser = f"{agent.family} {agent.major}" if versions and agent.major else agent.family
        if os is not None and os.family != "Other":
            system = os.family
    if browser and system:
        return f"{browser} on {system}"
    if browser:
        return str(browser)
    if system:
        return f"Unknown browser on {system}"
    return Truncator(user_agent).chars(RAW_NAME_LENGTH)


def parser_installed() -> bool:
    """Whether ua-parser is there to name devices."""
    try:
        import ua_parser  # noqa: F401
    except ImportError:
        return False
    return True


def _parse(user_agent: str) -> PartialResult | None:
    """ua-parser's result for the browser and system, or None without ua-parser."""
    # Imported on each call (a dictionary look-up once loaded), so that the
    # package works without the extra and tests can take it away.
    try:
        import ua_parser
        from ua_parser import Domain
    except ImportError:
        return None
    # The global parser caches recent user agents. Devices are not asked
    # for: naming the phone model costs a third more and nobody reads it.
    return ua_parser.parser(user_agent, Domain.USER_AGENT | Domain.OS)
