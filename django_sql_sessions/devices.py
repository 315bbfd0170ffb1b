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
"""

from __future__ import annotations

import dataclasses
import ipaddress

from django.http import HttpRequest

from django_sql_sessions import conf
from django_sql_sessions.models import USER_AGENT_MAX_LENGTH


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
