"""The personal carbon account: what a user's activities avoided in a year, by kind and by
month, each gram traceable to the methodology of the rules version that valued it, and a
printable yearly statement (SVG, rendered as safely as planting certificates).

Read from ``carbon_months``, the rollup the ingest statement keeps (one query per request).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from app.core.errors import Unauthorized
from app.core.sql import Pg
from app.core.svg import clean, fit_size
from app.energy.repository import CARBON_YEAR, CarbonRow
from app.energy.schemas import CarbonAccountOut, CarbonKind, CarbonMonthOut, CarbonValuation
from app.rules.registry import RulesRegistry


@dataclass(frozen=True)
class CarbonYear:
    holder: str
    account: CarbonAccountOut


def _methodology(
    registry: RulesRegistry, version: int, kind: str, region: str | None
) -> tuple[str, str]:
    try:
        rules = registry.get(version).rules.activities.get(kind)
    except KeyError:  # a version not loaded in this process yet
        rules = None
    if rules is None:
        return "", ""
    factor = rules.for_region(region)
    return factor.method, factor.source


def assemble(rows: list[CarbonRow], registry: RulesRegistry) -> CarbonYear:
    """The account from :data:`CARBON_YEAR`'s rows (pure)."""
    first = rows[0]
    if not first.found:  # the login outlived its user (erased)
        raise Unauthorized("This login has ended; sign in again")
    kinds: dict[str, list[CarbonValuation]] = defaultdict(list)
    months = {m: [0, 0] for m in range(1, 13)}
    for r in rows:
        if r.kind is None or r.month is None or r.rules_version is None:
            continue
        events, grams = int(r.events or 0), int(r.co2e_g or 0)
        months[r.month.month][0] += events
        months[r.month.month][1] += grams
        region = r.region or None
        found = next(
            (v for v in kinds[r.kind] if (v.rules_version, v.region) == (r.rules_version, region)),
            None,
        )
        if found is None:
            method, source = _methodology(registry, r.rules_version, r.kind, region)
            kinds[r.kind].append(
                CarbonValuation(
                    rules_version=r.rules_version,
                    region=region,
                    events=events,
                    co2e_g=grams,
                    method=method,
                    source=source,
                )
            )
        else:
            found.events += events
            found.co2e_g += grams
    by_kind = []
    for kind, valuations in kinds.items():
        valuations.sort(key=lambda v: (v.rules_version, v.region or ""))
        latest = max(valuations, key=lambda v: (v.rules_version, v.region is None, v.co2e_g))
        by_kind.append(
            CarbonKind(
                kind=kind,
                events=sum(v.events for v in valuations),
                co2e_g=sum(v.co2e_g for v in valuations),
                method=latest.method,
                source=latest.source,
                valuations=valuations,
            )
        )
    by_kind.sort(key=lambda k: (-k.co2e_g, k.kind))
    account = CarbonAccountOut(
        year=first.year,
        total_co2e_g=sum(k.co2e_g for k in by_kind),
        events=sum(k.events for k in by_kind),
        by_kind=by_kind,
        by_month=[
            CarbonMonthOut(month=f"{first.year:04d}-{m:02d}", events=e, co2e_g=g)
            for m, (e, g) in months.items()
        ],
    )
    return CarbonYear(first.display_name or first.handle or "A Canopy member", account)


async def carbon_year(
    pg: Pg, registry: RulesRegistry, user_id: uuid.UUID, year: int | None, now: datetime
) -> CarbonYear:
    """The caller's account for ``year`` (default: their current local year), one query."""
    rows = await pg.fetch(CARBON_YEAR, user=user_id, year=year, now=now)
    return assemble(rows, registry)


# --- the printable statement ---------------------------------------------------------------------

INK = "#1f3d2b"
GREEN = "#2f6b3b"
GOLD = "#b08d3c"
PAPER = "#fbf8ef"
SERIF = "Georgia, 'Times New Roman', serif"
SANS = "'Helvetica Neue', Arial, sans-serif"
_KIND_ROWS = 8  # kinds listed by name; the rest are summed in one line


def _kg(grams: int) -> str:
    return f"{grams / 1000:,.1f} kg" if grams >= 10_000 else f"{grams:,} g"


def render_statement(data: CarbonYear, issued: datetime) -> str:
    """The yearly statement as a standalone SVG document (A4-ish portrait)."""
    account = data.account
    holder = clean(data.holder, 40)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="1100" '
        'viewBox="0 0 800 1100" role="img" aria-labelledby="title">',
        f'<title id="title">Carbon statement {account.year}</title>',
        f'<rect width="800" height="1100" fill="{PAPER}"/>',
        f'<rect x="16" y="16" width="768" height="1068" fill="none" stroke="{GREEN}" '
        'stroke-width="5"/>',
        f'<g font-family="{SERIF}" fill="{INK}" text-anchor="middle">',
        f'<text x="400" y="92" font-size="34">Personal Carbon Statement {account.year}</text>',
        f'<text x="400" y="150" font-size="{fit_size(data.holder, 30, 30)}" font-style="italic" '
        f'fill="{GREEN}">{holder}</text>',
        f'<line x1="220" y1="168" x2="580" y2="168" stroke="{GOLD}" stroke-width="1.5"/>',
        '<text x="400" y="214" font-size="18">avoided through low-carbon activities</text>',
        f'<text x="400" y="272" font-size="44" font-weight="bold">'
        f"{escape(_kg(account.total_co2e_g))} CO2e</text>",
        f'<text x="400" y="304" font-size="15">{account.events:,} activities counted</text>',
        "</g>",
        f'<g font-family="{SANS}" fill="{INK}" font-size="14">',
        f'<text x="70" y="360" font-weight="bold" fill="{GREEN}">By activity</text>',
        '<text x="730" y="360" text-anchor="end" font-weight="bold">CO2e</text>',
    ]
    y = 388
    shown = account.by_kind[:_KIND_ROWS]
    for kind in shown:
        parts.append(f'<text x="70" y="{y}">{clean(kind.kind.replace("_", " "), 40)}</text>')
        parts.append(f'<text x="480" y="{y}" text-anchor="end">{kind.events:,} events</text>')
        parts.append(f'<text x="730" y="{y}" text-anchor="end">{escape(_kg(kind.co2e_g))}</text>')
        parts.append(
            f'<text x="86" y="{y + 17}" font-size="10" fill="#5b6b60">'
            f"{clean(kind.method, 110)}</text>"
        )
        y += 40
    rest = account.by_kind[_KIND_ROWS:]
    if rest:
        grams = sum(k.co2e_g for k in rest)
        parts.append(f'<text x="70" y="{y}">{len(rest)} more kinds</text>')
        parts.append(f'<text x="730" y="{y}" text-anchor="end">{escape(_kg(grams))}</text>')
        y += 40
    if not account.by_kind:
        parts.append(f'<text x="70" y="{y}">No activities counted this year.</text>')
        y += 40
    # the months as bars
    top = max(y + 30, 760)
    parts.append(f'<text x="70" y="{top}" font-weight="bold" fill="{GREEN}">By month</text>')
    peak = max((m.co2e_g for m in account.by_month), default=0) or 1
    base = top + 190
    for i, month in enumerate(account.by_month):
        x = 80 + i * 54
        height = round(150 * month.co2e_g / peak)
        parts.append(
            f'<rect x="{x}" y="{base - height}" width="34" height="{height}" fill="{GREEN}" '
            'opacity="0.8"/>'
        )
        parts.append(
            f'<text x="{x + 17}" y="{base + 18}" text-anchor="middle" font-size="11">'
            f"{escape(month.month[5:])}</text>"
        )
    parts += [
        f'<text x="70" y="1050" font-size="11">Issued {issued:%d %B %Y} · 1 g of green energy '
        "= 1 g CO2e avoided · each kind valued by the published rules version in force</text>",
        "</g>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
