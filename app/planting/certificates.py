"""Planting certificates as SVG: a page a browser shows and a phone can share.

Everything a user or an operator typed (display names, item names, regions, partner names) is
XML-escaped and stripped of characters XML cannot carry, so no text can break the document or
inject markup into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from xml.sax.saxutils import escape

from app.core.svg import clean, fit_size

INK = "#1f3d2b"
GREEN = "#2f6b3b"
GOLD = "#b08d3c"
PAPER = "#fbf8ef"
SERIF = "Georgia, 'Times New Roman', serif"
SANS = "'Helvetica Neue', Arial, sans-serif"


@dataclass(frozen=True)
class CertificateData:
    number: str
    holder: str
    kind: str  # tree | conservation | virtual
    item: str
    species: str | None
    unit: str
    quantity: int
    region: str
    partner: str
    cost_g: int
    issued: datetime
    status: str
    planted_on: date | None = None
    lat: float | None = None
    lon: float | None = None


# the safe-text helpers live in app.core.svg (carbon statements use them too)
__all__ = ["CertificateData", "clean", "render"]
_size = fit_size


def _grams(grams: int) -> str:
    return f"{grams:,} g"


def _day(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _coordinates(lat: float, lon: float) -> str:
    return f"{abs(lat):.4f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.4f}° {'E' if lon >= 0 else 'W'}"


def _what(data: CertificateData) -> str:
    if data.kind == "conservation":
        return f"{data.quantity:,} m² of {data.item}" if data.unit == "m2" else data.item
    if data.quantity == 1:
        return data.item
    return f"{data.quantity:,} \u00d7 {data.item}"


_TITLES = {
    "tree": ("Certificate of Tree Planting", "to plant"),
    "conservation": ("Certificate of Conservation", "to protect"),
    "virtual": ("Certificate of Green Energy", "for"),
}


def _status_line(data: CertificateData) -> str:
    if data.status == "cancelled":
        return "This planting was cancelled; its energy was returned."
    if data.status in ("planted", "verified") and data.planted_on is not None:
        where = (
            f" at {_coordinates(data.lat, data.lon)}"
            if data.lat is not None and data.lon is not None
            else ""
        )
        checked = " · verified by an independent auditor" if data.status == "verified" else ""
        return f"Planted on {_day(data.planted_on)}{where}{checked}"
    if data.status == "completed":
        return "Completed"
    return {
        "reserved": "Reserved · on its way to the planting partner",
        "ordered": "Ordered from the planting partner",
        "acknowledged": "Accepted by the planting partner · planting season ahead",
    }.get(data.status, data.status.capitalize())


def _emblem(cx: int, cy: int) -> str:
    """A small tree in a laurel-green roundel."""
    return (
        f'<g transform="translate({cx} {cy})">'
        f'<circle r="46" fill="{PAPER}" stroke="{GOLD}" stroke-width="3"/>'
        f'<circle r="39" fill="none" stroke="{GOLD}" stroke-width="1" stroke-dasharray="2 4"/>'
        f'<rect x="-4" y="4" width="8" height="24" rx="2" fill="#6b4f2a"/>'
        f'<circle cx="0" cy="-8" r="20" fill="{GREEN}"/>'
        f'<circle cx="-14" cy="4" r="13" fill="#3f8a4d"/>'
        f'<circle cx="14" cy="4" r="13" fill="#3f8a4d"/>'
        f'<circle cx="-6" cy="-14" r="8" fill="#5aa867" opacity="0.8"/>'
        "</g>"
    )


def render(data: CertificateData) -> str:
    """The certificate as a standalone SVG document."""
    title, verb = _TITLES.get(data.kind, _TITLES["tree"])
    holder, what = clean(data.holder, 40), clean(_what(data), 60)
    species = clean(data.species, 60) if data.species else ""
    place = f"in {clean(data.region, 60)}, with {clean(data.partner, 50)}"
    status = clean(_status_line(data), 110)
    sizes = {
        "holder": _size(data.holder, 46, 30),
        "what": _size(_what(data), 34, 40),
        "place": _size(data.region + data.partner, 19, 66),
        "status": _size(_status_line(data), 16, 95),
    }
    cancelled = data.status == "cancelled"
    watermark = (
        f'<text x="500" y="420" text-anchor="middle" font-family="{SANS}" font-size="120" '
        f'font-weight="700" fill="#b03a2e" opacity="0.12" '
        f'transform="rotate(-18 500 420)">CANCELLED</text>'
        if cancelled
        else ""
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="700" '
        'viewBox="0 0 1000 700" role="img" aria-labelledby="title">',
        f'<title id="title">{escape(title)} {clean(data.number, 40)}</title>',
        "<defs>"
        '<linearGradient id="paper" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{PAPER}"/><stop offset="1" stop-color="#f1ead6"/>'
        "</linearGradient>"
        "</defs>",
        '<rect width="1000" height="700" fill="url(#paper)"/>',
        f'<rect x="18" y="18" width="964" height="664" fill="none" stroke="{GREEN}" '
        'stroke-width="6"/>',
        f'<rect x="34" y="34" width="932" height="632" fill="none" stroke="{GOLD}" '
        'stroke-width="1.5"/>',
        _emblem(500, 112),
        f'<g font-family="{SERIF}" fill="{INK}" text-anchor="middle">',
        f'<text x="500" y="200" font-size="40" letter-spacing="1">{escape(title)}</text>',
        '<text x="500" y="246" font-size="19" font-style="italic">This certifies that</text>',
        f'<text x="500" y="306" font-size="{sizes["holder"]}" font-style="italic" '
        f'fill="{GREEN}">{holder}</text>',
        f'<line x1="270" y1="324" x2="730" y2="324" stroke="{GOLD}" stroke-width="1.5"/>',
        f'<text x="500" y="366" font-size="19">redeemed {_grams(data.cost_g)} of green energy '
        f"{verb}</text>",
        f'<text x="500" y="418" font-size="{sizes["what"]}" font-weight="bold">{what}</text>',
        (
            f'<text x="500" y="452" font-size="20" font-style="italic">{species}</text>'
            if species
            else ""
        ),
        f'<text x="500" y="{490 if species else 462}" font-size="{sizes["place"]}">{place}</text>',
        f'<text x="500" y="530" font-size="{sizes["status"]}" font-family="{SANS}" '
        f'fill="{GREEN}">{status}</text>',
        "</g>",
        watermark,
        f'<g font-family="{SANS}" fill="{INK}" font-size="14">',
        f'<line x1="90" y1="600" x2="330" y2="600" stroke="{INK}" stroke-width="1"/>',
        f'<text x="210" y="622" text-anchor="middle">Issued {_day(data.issued.date())}</text>',
        f'<line x1="670" y1="600" x2="910" y2="600" stroke="{INK}" stroke-width="1"/>',
        f'<text x="790" y="622" text-anchor="middle">Certificate No. '
        f"{clean(data.number, 40)}</text>",
        f'<text x="500" y="622" text-anchor="middle" font-size="12" fill="{GREEN}" '
        'letter-spacing="3">CANOPY · GREEN ENERGY</text>',
        "</g>",
        "</svg>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
