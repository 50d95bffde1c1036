"""The HTML report of a run, at study size; its area checks live in ``measure.plausibility``."""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.io.files import atomic_write_text
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    FAMILIARITY_COLUMN,
    is_count_row,
    is_summary_row,
)
from sliceseg.measure.plausibility import area_warnings, sided_pairs_from_names, warned_slice
from sliceseg.measure.review_order import least_confident
from sliceseg.measure.summary_rows import overall_mean_clause, shown_number
from sliceseg.report.colours import roi_colour_hex
from sliceseg.report.html_script import CSS as SCRIPT_CSS
from sliceseg.report.html_script import SCRIPT

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
.unlike { background: #fdecea; border-color: #b42318; border-width: 2px; }
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


@dataclass(frozen=True)
class _Slices:
    """What the report knows of each slice row: its anchor, flags and confidence."""

    labels: list[str]  # row labels "1".."N", in series order
    files: list[str]
    confidence: list[float]  # NaN when unknown
    flagged: set[str]  # row labels named by a warning
    low: set[str]  # row labels in "review first": unlike training first, then least confident
    drawn: frozenset[str] = frozenset()  # row labels with a picture: links go to "#slice-N"
    unfamiliar: frozenset[str] = frozenset()  # row labels of series unlike the training data
    review: tuple[str, ...] = ()  # the labels of ``low`` in ``least_confident``'s order

    @classmethod
    def of(
        cls,
        table: pd.DataFrame,
        warnings: Sequence[str],
        low_share: float,
        *,
        drawn: Sequence[str] = (),
    ) -> _Slices:
        labels = [str(label) for label in table.index if not is_summary_row(label)]
        files = [str(table.loc[label, "file"]) if "file" in table else label for label in labels]
        if CONFIDENCE_COLUMN in table:
            confidence = [float(table.loc[label, CONFIDENCE_COLUMN]) for label in labels]
        else:
            confidence = [math.nan] * len(labels)
        by_file = {file: label for label, file in zip(labels, files, strict=True)}
        flagged = {by_file[file] for w in warnings if (file := warned_slice(w, by_file))}
        unfamiliar = frozenset(
            label
            for label in labels
            if FAMILIARITY_COLUMN in table and table.loc[label, FAMILIARITY_COLUMN] == 1
        )
        review = _review_order(labels, confidence, unfamiliar, low_share)
        pictures = frozenset(by_file[name] for name in drawn if name in by_file)
        return cls(labels, files, confidence, flagged, set(review), pictures, unfamiliar, review)

    def link(self, label: str, text: str) -> str:
        """A link to the slice's picture (or, when it has none, its row)."""
        target = "slice" if label in self.drawn else "row"
        return f'<a href="#{target}-{_e(label)}">{_e(text)}</a>'

    def css(self, label: str) -> str:
        marks = (
            ("flagged", label in self.flagged),
            ("low", label in self.low),
            ("unlike", label in self.unfamiliar),
        )
        return " ".join(name for name, on in marks if on)

    @property
    def review_name(self) -> str:
        """What "review first" holds: the least confident slices, after those of a series
        unlike the training data when it holds some (`least_confident` puts them first)."""
        if self.low & self.unfamiliar:
            return "series unlike the training data first, then lowest confidence"
        return "lowest confidence"


def _review_order(
    labels: list[str], confidence: list[float], unfamiliar: frozenset[str], low_share: float
) -> tuple[str, ...]:
    """The slices to review first, in order: ``least_confident`` over the scored slices."""
    known = [i for i, c in enumerate(confidence) if c == c]
    if not known:
        return ()
    chosen = least_confident(
        [confidence[i] for i in known],
        [0] * len(known),
        n=max(1, math.ceil(low_share * len(known))),
        spread=False,
        flagged=[labels[i] in unfamiliar for i in known],
    )
    return tuple(labels[known[k]] for k in chosen)


def _warning_item(warning: str, slices: _Slices) -> str:
    by_file = dict(zip(slices.files, slices.labels, strict=True))
    file = warned_slice(warning, by_file)
    if file is None:
        return f"<li>{_e(warning)}</li>"
    return f"<li>{slices.link(by_file[file], file)}: {_e(warning[len(file) + 2 :])}</li>"


def _banner(unlike_training: Sequence[str], slices: _Slices) -> str:
    """The box above everything else: the series unlike the training data, one line each."""
    if not unlike_training:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in unlike_training)
    count = len(unlike_training)
    return (
        f'<section class="box unlike" id="unlike-training"><h2>⚠ {count} series unlike the '
        f"training data</h2><p>The model was not trained on data like this: its areas there "
        f"may be wrong however confident it looks; {_left_out_of_mean(slices)}, and their "
        f"slices come first under Review first.</p><ul>{items}</ul></section>"
    )


def _left_out_of_mean(slices: _Slices) -> str:
    """Whether the table's overall rows leave the unlike series out: not when every slice is
    theirs (`with_familiarity` keeps the rows over all of them, as a series' own table)."""
    every = bool(slices.labels) and len(slices.unfamiliar) == len(slices.labels)
    return overall_mean_clause("their areas", is_every_series=every)


def _messages(warnings: Sequence[str], notes: Sequence[str], slices: _Slices) -> str:
    if warnings:
        items = "".join(_warning_item(w, slices) for w in warnings)
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


def _review(slices: _Slices) -> str:
    """The "review first" list: the slices of a series unlike the training data, then the
    least confident (`least_confident`), as its heading says."""
    if not slices.low:
        return ""
    by_label = dict(zip(slices.labels, slices.files, strict=True))
    score = dict(zip(slices.labels, slices.confidence, strict=True))
    items = "".join(
        f"<li>{slices.link(label, by_label[label])} · confidence {score[label]:.3f}"
        + (" · <b>series unlike the training data</b>" if label in slices.unfamiliar else "")
        + "</li>"
        for label in slices.review
    )
    return (
        f'<section class="box note review" id="review"><h2>Review first ({len(slices.low)}): '
        f'{_e(slices.review_name)}</h2><p class="hint">Confidence is the Dice the model expects '
        "between its label map and its own probabilities, for the slice's least sure "
        "ROI (1 = sure of every pixel; 0 = an ROI every training slice showed is missing); low "
        "scores are where its errors concentrate. Slices of a series unlike the training data "
        "come first. Correct these first.</p>"
        f"<ol>{items}</ol></section>"
    )


def _settings(settings: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in settings.items())
    return f'<h2 id="settings">Model and settings</h2><table class="settings">{rows}</table>'


def _number_cell(value: object, *, mark_zero: bool, is_count: bool = False) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"<td>{_e(value)}</td>"
    shown = shown_number(number, is_count=is_count)
    css = "num zero" if mark_zero and number == 0 else "num"
    return f'<td class="{css}" data-value="{number!r}">{shown}</td>'


def _confidence_cell(value: object, *, is_low: bool) -> str:
    number = float(value)  # type: ignore[arg-type]
    shown = "–" if math.isnan(number) else f"{number:.3f}"
    return f'<td class="num conf{" low" if is_low else ""}" data-value="{number!r}">{shown}</td>'


def _table_row(
    label: str, row: pd.Series, rois: Sequence[str], *, css: str, is_slice: bool, link: bool
) -> str:
    """One row of the area table; a slice's row number links to its picture."""
    head = f'<a href="#slice-{_e(label)}">{_e(label)}</a>' if link else _e(label)
    cells = [f"<th>{head}</th>"]
    if "file" in row:
        cells.append(f"<td>{_e(row['file'])}</td>")
    count = is_count_row(label)
    cells.extend(_number_cell(row[name], mark_zero=is_slice, is_count=count) for name in rois)
    if CONFIDENCE_COLUMN in row:
        cells.append(_confidence_cell(row[CONFIDENCE_COLUMN], is_low="low" in css.split()))
    row_id = f' id="row-{_e(label)}"' if is_slice else ""
    return f"<tr{row_id}{_class(css)}>{''.join(cells)}</tr>"


def _class(css: str) -> str:
    return f' class="{css}"' if css else ""


def _area_table(table: pd.DataFrame, unit: str, slices: _Slices) -> str:
    rois = [c for c in table.columns if c not in ("file", CONFIDENCE_COLUMN, FAMILIARITY_COLUMN)]
    head = ["<th>slice</th>"] + (["<th>file</th>"] if "file" in table.columns else [])
    for k, name in enumerate(rois, 1):
        colour = roi_colour_hex(k)
        head.append(f'<th><span class="swatch" style="background:{colour}"></span>{_e(name)}</th>')
    if CONFIDENCE_COLUMN in table.columns:
        head.append("<th>confidence</th>")
    body: list[str] = []
    summary: list[str] = []
    for label, row in table.iterrows():
        if str(label) in slices.labels:
            css = slices.css(str(label))
            link = str(label) in slices.drawn
            body.append(_table_row(str(label), row, rois, css=css, is_slice=True, link=link))
        else:
            css = "summary first" if not summary else "summary"
            summary.append(_table_row(str(label), row, rois, css=css, is_slice=False, link=False))
    return (
        f'<h2 id="areas">Cross-sectional areas ({_e(unit)})</h2>'
        f'<p class="hint">One row per slice in series order; at the bottom, the mean and '
        "sample standard deviation (n − 1) over the slices where each ROI is present (area "
        "&gt; 0), and n, how many; an ROI not found on a slice shows 0.0 in red"
        f"{_unlike_hint(slices)}. Numbers are rounded to 0.1 here; the CSV has them in full. "
        "Click a column to sort by it."
        f"</p>{_filter(slices)}"
        f'<div class="scroll"><table id="area-table"><thead><tr>{"".join(head)}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody><tbody class="summary-rows">{"".join(summary)}</tbody>'
        "</table></div>"
    )


def _unlike_hint(slices: _Slices) -> str:
    """How the table marks the slices of a series unlike the training data (when it has some)."""
    if not slices.unfamiliar:
        return ""
    return "; the rows of a series unlike the training data are marked ⚠ and tinted red"


def _filter(slices: _Slices) -> str:
    options = [("all", f"all {len(slices.labels)} slices")]
    options.append(("flagged", f"flagged by a warning ({len(slices.flagged)})"))
    if slices.unfamiliar:
        options.append(("unlike", f"series unlike the training data ({len(slices.unfamiliar)})"))
    if slices.low:
        options.append(("low", f"review first: {slices.review_name} ({len(slices.low)})"))
        either = len(slices.flagged | slices.low)
        options.append(("review", f"flagged by a warning or review first ({either})"))
    choices = "".join(f'<option value="{v}">{_e(text)}</option>' for v, text in options)
    return (
        '<p class="controls"><label for="row-filter">Show</label>'
        f'<select id="row-filter">{choices}</select><span id="rows-shown" class="hint"></span></p>'
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


def _overlays(
    overlays: Sequence[tuple[str, Path]],
    thumbnails: Sequence[Path] | None,
    slices: _Slices,
    report_dir: Path,
) -> str:
    """The grid of slice pictures; a click opens the full overlay in a dialog."""
    if not overlays:
        return ""
    if thumbnails is not None and len(thumbnails) != len(overlays):
        raise ConfigError(
            f"{len(thumbnails)} thumbnails for {len(overlays)} overlays; give one per slice."
        )
    by_file = dict(zip(slices.files, range(len(slices.files)), strict=True))
    items = []
    for i, (name, path) in enumerate(overlays):
        row = by_file.get(name)  # the drawn slices may be some of the table's (--visuals auto)
        known = row is not None
        label = slices.labels[row] if row is not None else str(i + 1)
        confidence = slices.confidence[row] if row is not None else math.nan
        if thumbnails is None:  # the embedded picture is the full one
            link, small = f'href="#slice-{_e(label)}"', path
        else:
            full = Path(os.path.relpath(Path(path).resolve(), report_dir.resolve())).as_posix()
            full = _e(quote(full))  # a URL: a '#' or '%' in a file name is not a fragment
            link, small = f'href="{full}" data-full="{full}"', thumbnails[i]
        note = "" if math.isnan(confidence) else f" · {confidence:.3f}"
        items.append(
            f'<figure id="slice-{_e(label)}"{_class(slices.css(label) if known else "")}>'
            f'<a class="thumb" {link} data-caption="{_e(label)} · {_e(name)}">'
            f'<img src="{_data_uri(small, what="overlay")}" alt="{_e(name)}" loading="lazy">'
            f"</a><figcaption><b>{_e(label)}</b> · {_e(name)}{note}</figcaption></figure>"
        )
    return (
        '<h2 id="slices">Segmentation of every slice</h2><p class="hint">Click a picture to '
        "see the slice and its overlay at full size.</p>"
        f'<div class="thumbs{" large" if thumbnails is None else ""}">{"".join(items)}</div>'
        '<dialog id="viewer"><button id="viewer-close" type="button">close</button>'
        '<img id="viewer-img" alt="full overlay"><p id="viewer-caption"></p></dialog>'
    )


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
    thumbnails: Sequence[Path] | None = None,
    low_confidence_share: float = 0.1,
    unlike_training: Sequence[str] = (),
) -> Path:
    """Write one HTML report a colleague can open offline in any browser, at any study size.

    Images are embedded as base64 data URIs; with ``thumbnails`` only those small pictures
    are, and a click on one opens its full overlay from the file beside the report (so a
    500-slice study stays a few megabytes). The page has inline CSS and a small inline script
    (no library, no network) that sorts the area table by any column, filters it to the slices
    a warning flags or the least confident ones, and opens the full overlays. The area table
    has ``id="area-table"``; each number cell shows one decimal and carries the exact value in
    its ``data-value`` attribute. Warnings that name a slice link to it; with a
    ``confidence`` column a "review first" box lists the least confident slices.

    Args:
        path: output ``.html``; written atomically.
        title: the page title.
        settings: model and run settings shown as a two-column table (values shown as text).
        area_table: rows = slices (index "1".."N", ``file`` column) followed by the summary
            rows; one column per ROI name in ROI order, and optionally ``confidence``.
        overlays: ``(slice name, image file)`` per slice drawn, in series order (PNG/JPEG/GIF);
            the name is the slice's ``file`` in ``area_table`` (some slices may have none).
        figures: ``(caption, image file)`` for each plot.
        warnings: findings to show (``"<file>: ..."`` links to that slice).
        notes: further remarks (e.g. skipped files).
        area_unit: the unit of the areas, for the table heading.
        thumbnails: one small picture per overlay (e.g. from `save_thumbnail`), embedded in
            place of the overlays, which are then linked, not embedded.
        low_confidence_share: the share of slices (lowest confidence first) listed under
            "review first" and marked as low confidence.
        unlike_training: one line per series unlike the training data, shown in a banner
            above everything else (the table's ``unlike_training`` column marks its slices,
            which come first under "review first").

    Returns:
        ``path``.

    Raises:
        ConfigError: an image file is missing, unreadable, or not PNG/JPEG/GIF, or the
            thumbnails do not match the overlays.

    Example:
        >>> write_report("out/report.html", title="L3 areas", settings={"model": "best.pt"},
        ...              area_table=areas.wide, overlays=overlays, figures=[], warnings=[])
    """
    if not 0 < low_confidence_share <= 1:
        raise ConfigError(f"low_confidence_share must be in (0, 1], got {low_confidence_share}.")
    drawn = [name for name, _path in overlays]
    slices = _Slices.of(area_table, warnings, low_confidence_share, drawn=drawn)
    body = [
        _header(title, figures=bool(figures), overlays=bool(overlays), review=bool(slices.low)),
        _banner(unlike_training, slices),
        _messages(warnings, notes, slices),
        _review(slices),
        _settings(settings),
        _area_table(area_table, area_unit, slices),
        _figures(figures),
        _overlays(overlays, thumbnails, slices, Path(path).parent),
    ]
    return atomic_write_text(path, _page(title, body))


def _header(title: str, *, figures: bool, overlays: bool, review: bool) -> str:
    from sliceseg._version import __version__

    created = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    return (
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta">Created {_e(created)} · sliceseg {_e(__version__)}</p><nav>'
        '<a href="#warnings">Warnings</a>'
        + ('<a href="#review">Review first</a>' if review else "")
        + '<a href="#settings">Settings</a><a href="#areas">Areas</a>'
        + ('<a href="#figures">Figures</a>' if figures else "")
        + ('<a href="#slices">Slices</a>' if overlays else "")
        + "</nav></header>"
    )


def _page(title: str, sections: Sequence[str]) -> str:
    from sliceseg._version import __version__

    footer = (
        f"<footer>Written by sliceseg {_e(__version__)}. Areas are pixel counts × the row and "
        "column pixel spacing of each slice's own DICOM grid.</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{SCRIPT_CSS}</style></head>\n<body><main>\n"
        + "\n".join(section for section in [*sections, footer] if section)
        + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )
