"""Template filters for the example's pages."""

from __future__ import annotations

from django import template
from django.utils.text import Truncator

register = template.Library()

# First match wins, so each entry comes before the names its user agents also
# contain: Edge and Opera say "Chrome/", Chrome says "Safari/", Android says
# "Linux" and an iPhone says "like Mac OS X".
BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
RAW_LENGTH = 40


@register.filter
def device_name(user_agent: str | None) -> str:
    """
    A guess at the browser and system behind a user agent, for people to
    read: "Firefox on Windows". User agents are easy to fake and hard to
    parse, so this only looks for a few well-known names and otherwise shows
    the start of the string itself; the page keeps the whole one in a title.
    """
    if not user_agent:
        return "Unknown device"
    browser = next((name for token, name in BROWSERS if token in user_agent), None)
    system = next((name for token, name in SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser:
        return browser
    if system:
        return f"A browser on {system}"
    return Truncator(user_agent).chars(RAW_LENGTH)
