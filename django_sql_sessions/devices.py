"""
Device details (SQL_SESSIONS_DEVICE_DETAILS): the client's network and user
agent, as docs/design.rst describes, and device_name() for people to read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING

from django.http import HttpRequest
from django.utils.text import Truncator

from django_sql_sessions import conf
from django_sql_sessions.base_session import USER_AGENT_MAX_LENGTH

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
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None  # a test client, a misconfigured proxy
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    bits = (conf.IPV4_PREFIX if address.version == 4 else conf.IPV6_PREFIX).get()
    if not bits:
        return None
    # From the integer, which drops an IPv6 zone; ip_network() would take a
    # small IPv6 address (::203.0.113.7) for an IPv4 one.
    network_class = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
    network = network_class((int(address), bits), strict=False)
    return str(network.network_address)


def clean_user_agent(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    printable = "".join(char for char in value if char.isprintable()).strip()
    return printable[:USER_AGENT_MAX_LENGTH] or None


GUESSED_NAME_LENGTH = 40
UNKNOWN_DEVICE = "Unknown device"


def device_name(user_agent: str | None, *, versions: bool = True) -> str:
    """
    The browser and system behind a user agent, for people to read: "Firefox
    140 on Windows", by ua-parser where installed, else a short guess.
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
    if browser is None and system is None:
        return _guess(user_agent, versions=versions)
    return _named(browser, system)


def _named(browser: str | None, system: str | None) -> str:
    if browser and system:
        return f"{browser} on {system}"
    if system:
        return f"Unknown browser on {system}"
    return str(browser)


# "Name/version" product tokens, not a URL's path.
_PRODUCT = re.compile(r"(?<![\w.:/-])([A-Za-z][\w.-]*)/(\S*)")
# Most specific first: Edge and Opera also say "Chrome". Names as ua-parser
# gives them, so that installing it changes few names.
_BROWSERS = (
    ("Edg", "Edge"),
    ("EdgA", "Edge"),
    ("EdgiOS", "Edge"),
    ("OPR", "Opera"),
    ("SamsungBrowser", "Samsung Internet"),
    ("Firefox", "Firefox"),
    ("FxiOS", "Firefox iOS"),
    ("HeadlessChrome", "HeadlessChrome"),
    ("CriOS", "Chrome Mobile iOS"),
    ("Chromium", "Chromium"),
    ("Chrome", "Chrome"),
)
_NOT_NAMES = frozenset(("Mozilla", "AppleWebKit", "Gecko", "Mobile", "Version", "Safari"))
# Most specific first: Android also says "Linux", iOS "like Mac OS X".
_SYSTEMS = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("iPod", "iOS"),
    ("CrOS", "Chrome OS"),
    ("Mac OS X", "Mac OS X"),
    ("Linux", "Linux"),
)


def _guess(user_agent: str, *, versions: bool) -> str:
    """A name without ua-parser, from product tokens and system words ("curl 8")."""
    products: dict[str, str] = {}
    for name, version in _PRODUCT.findall(user_agent):
        products.setdefault(name, version)
    browser = next(((token, name) for token, name in _BROWSERS if token in products), None)
    mobile = "Mobile" in user_agent
    if browser == ("Chrome", "Chrome") and mobile:
        browser = ("Chrome", "Chrome Mobile")
    if browser is None and "Version" in products and "Safari" in products:
        browser = ("Version", "Mobile Safari" if mobile else "Safari")
    if browser is None:
        others = [name for name in products if name not in _NOT_NAMES]
        browser = (others[0], others[0]) if others else None
    system = next((name for word, name in _SYSTEMS if word in user_agent), None)
    if browser is None and system is None:
        words = user_agent.split()
        return Truncator(words[0]).chars(GUESSED_NAME_LENGTH) if words else UNKNOWN_DEVICE
    named = None
    if browser is not None:
        token, named = browser
        major = re.match(r"\d+", products[token])
        if versions and major:
            named = f"{named} {major[0]}"
    return Truncator(_named(named, system)).chars(GUESSED_NAME_LENGTH)


def parser_installed() -> bool:
    try:
        import ua_parser  # noqa: F401
    except ImportError:
        return False
    return True


def _parse(user_agent: str) -> PartialResult | None:
    # Imported on each call, so that tests can take the extra away.
    try:
        import ua_parser
        from ua_parser import Domain
    except ImportError:
        return None
    # Not Domain.DEVICE: the phone model costs a third more and nobody reads it.
    return ua_parser.parser(user_agent, Domain.USER_AGENT | Domain.OS)
