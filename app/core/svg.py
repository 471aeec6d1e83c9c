"""Safe text for SVG documents (certificates, carbon statements).

Everything a user or an operator typed (display names, item names, regions, partner names) is
XML-escaped and stripped of characters XML cannot carry, so no text can break the document or
inject markup into it.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

# characters XML 1.0 cannot contain, even escaped
NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# served with every SVG document: opened on its own, it may style itself and nothing else
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def clean(value: str, limit: int) -> str:
    """Safe text for an SVG text node: valid XML characters, at most ``limit`` long, escaped."""
    value = NOT_XML.sub("", value).strip()
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return escape(value)


def fit_size(shown: str, base: int, fits: int) -> int:
    """A font size at which ``shown`` fits the page: ``base`` up to ``fits`` characters."""
    return base if len(shown) <= fits else max(base * fits // len(shown), base // 2)
