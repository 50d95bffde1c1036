"""The self-contained HTML report of a run; its area checks live in ``measure.plausibility``."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.io.files import atomic_write_text
from sliceseg.measure.areas import is_summary_row
from sliceseg.measure.plausibility import area_warnings, sided_pairs_from_names
from sliceseg.report.visualize import roi_colour

__all__ = ["area_warnings", "sided_pairs_from_names", "write_report"]
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 18px; padding-bottom: 8px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { font-size: 19px; margin: 28px 0 10px; }
.meta, figcaption, .hint { color: var(--muted); font-size: 13px; }
nav a { color: var(--accent); margin-right: 14px; font-size: 14px; }
.box { border-radius: 8px; padding: 10px 16px; margin: 14px 0; border: 1px solid; }
.box h2 { margin: 2px 0 6px; font-size: 17px; }
.box ul { margin: 4px 0; padding-left: 20px; }
.warn { background: #fff8e5; border-color: #e3b341; }
.ok { background: #edf9f0; border-color: #4ac26b; }
.note { background: var(--soft); border-color: var(--line); }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; }
thead th { position: sticky; top: 0; background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.settings th { font-weight: 600; background: var(--soft); white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
#area-table tbody tr:nth-child(even) { background: #fafbfc; }
#area-table tbody tr.summary { background: #fff4c2; font-weight: 600; }
#area-table td.zero { color: #b42318; background: #fdecea; }
#area-table tr.summary.first td, #area-table tr.summary.first th { border-top: 2px solid #8c959f; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; border: 1px solid rgba(0,0,0,.3); }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; border-radius: 4px; }
.plots figure { margin: 12px 0 22px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
.grid figure { background: var(--soft); padding: 6px; border-radius: 6px; }
.grid figcaption { padding-top: 4px; overflow-wrap: anywhere; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { thead th { position: static; } .grid { grid-template-columns: repeat(3, 1fr); } }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(path: Path | str, *, what: str) -> str:
    source = Path(path)
    mime = _MIME.get(source.suffix.lower())
    if mime is None:
        raise ConfigError(f"{source}: {what} must be PNG, JPEG or GIF, got {source.suffix!r}.")
    try:
        data = source.read_bytes()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the {what} ({error.strerror}).") from error
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _messages(warnings: Sequence[str], notes: Sequence[str]) -> str:
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        count = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        parts = [f'<section class="box warn" id="warnings"><h2>⚠ {count}</h2><ul>{items}</ul>']
    else:
        parts = [
            '<section class="box ok" id="warnings"><h2>No warnings</h2>'
            "<p>The automatic checks found nothing unusual in the areas.</p>"
        ]
    parts.append("</section>")
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        parts.append(f'<section class="box note"><h2>Notes</h2><ul>{items}</ul></section>')
    return "".join(parts)


def _settings(settings: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in settings.items())
    return f'<h2 id="settings">Model and settings</h2><table class="settings">{rows}</table>'


def _number_cell(value: object, *, mark_zero: bool) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"<td>{_e(value)}</td>"
    shown = "–" if math.isnan(number) else f"{number:.1f}"
    css = "num zero" if mark_zero and number == 0 else "num"
    return f'<td class="{css}" data-value="{number!r}">{shown}</td>'


def _area_table(table: pd.DataFrame, unit: str) -> str:
    rois = [c for c in table.columns if c != "file"]
    head = ["<th>slice</th>"] + (["<th>file</th>"] if "file" in table.columns else [])
    for k, name in enumerate(rois, 1):
        colour = "#{:02x}{:02x}{:02x}".format(*roi_colour(k))
        head.append(f'<th><span class="swatch" style="background:{colour}"></span>{_e(name)}</th>')
    body = []
    for position, (label, row) in enumerate(table.iterrows()):
        is_summary = is_summary_row(label)
        first = is_summary and (position == 0 or not is_summary_row(table.index[position - 1]))
        css = ' class="summary first"' if first else ' class="summary"' if is_summary else ""
        cells = [f"<th>{_e(label)}</th>"]
        if "file" in table.columns:
            cells.append(f"<td>{_e(row['file'])}</td>")
        cells.extend(_number_cell(row[name], mark_zero=not is_summary) for name in rois)
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (
        f'<h2 id="areas">Cross-sectional areas ({_e(unit)})</h2>'
        f'<p class="hint">One row per slice in series order; mean and standard deviation over '
        f"the slices at the bottom; an ROI not found on a slice shows 0.0 in red. Numbers are "
        "rounded to 0.1 here; the CSV has them in full."
        f'</p><div class="scroll"><table id="area-table"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _figures(figures: Sequence[tuple[str, Path]]) -> str:
    if not figures:
        return ""
    items = "".join(
        f'<figure><img src="{_data_uri(path, what="figure")}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for caption, path in figures
    )
    return f'<h2 id="figures">Figures</h2><div class="plots">{items}</div>'


def _overlays(overlays: Sequence[tuple[str, Path]]) -> str:
    if not overlays:
        return ""
    items = "".join(
        f'<figure><img src="{_data_uri(path, what="overlay")}" alt="{_e(name)}">'
        f"<figcaption><b>{number}</b> · {_e(name)}</figcaption></figure>"
        for number, (name, path) in enumerate(overlays, 1)
    )
    return f'<h2 id="slices">Segmentation of every slice</h2><div class="grid">{items}</div>'


def write_report(
    path: Path | str,
    *,
    title: str,
    settings: Mapping[str, object],
    area_table: pd.DataFrame,
    overlays: Sequence[tuple[str, Path]],
    figures: Sequence[tuple[str, Path]],
    warnings: Sequence[str],
    notes: Sequence[str] = (),
    area_unit: str = "mm²",
) -> Path:
    """Write one self-contained HTML report a colleague can open offline in any browser.

    Every image is embedded as a base64 data URI; the page has inline CSS and no scripts.
    The area table has ``id="area-table"``; each number cell shows one decimal and carries the
    exact value in its ``data-value`` attribute.

    Args:
        path: output ``.html``; written atomically.
        title: the page title.
        settings: model and run settings shown as a two-column table (values shown as text).
        area_table: rows = slices (index = slice number, ``file`` column) followed by the
            ``mean`` and ``std`` rows; one column per ROI name in ROI order.
        overlays: ``(slice name, image file)`` per slice in series order (PNG/JPEG/GIF).
        figures: ``(caption, image file)`` for each plot.
        warnings: findings to show in the warnings box (e.g. from :func:`area_warnings`).
        notes: further remarks (e.g. skipped files).
        area_unit: the unit of the areas, for the table heading.

    Returns:
        ``path``.

    Raises:
        ConfigError: an image file is missing, unreadable, or not PNG/JPEG/GIF.

    Example:
        >>> write_report("out/report.html", title="L3 areas", settings={"model": "best.pt"},
        ...              area_table=areas.wide, overlays=overlays, figures=[], warnings=[])
    """
    from sliceseg._version import __version__

    created = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    sections = [
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta">Created {_e(created)} · sliceseg {_e(__version__)}</p><nav>'
        '<a href="#warnings">Warnings</a><a href="#settings">Settings</a>'
        '<a href="#areas">Areas</a>'
        + ('<a href="#figures">Figures</a>' if figures else "")
        + ('<a href="#slices">Slices</a>' if overlays else "")
        + "</nav></header>",
        _messages(warnings, notes),
        _settings(settings),
        _area_table(area_table, area_unit),
        _figures(figures),
        _overlays(overlays),
        f"<footer>Written by sliceseg {_e(__version__)}. Areas are pixel counts × the row and "
        "column pixel spacing of each slice's own DICOM grid.</footer>",
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(section for section in sections if section)
        + "\n</main></body></html>\n"
    )
    return atomic_write_text(path, page)
