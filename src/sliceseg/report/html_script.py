"""The report's small inline script and its styles: sort and filter the table, open a slice.

No library and no network: the script is plain JavaScript inside the page. Without it the page
still shows everything (the table in series order, thumbnails that link to the full overlays).
"""

from __future__ import annotations

SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("area-table");
  var body = table ? table.tBodies[0] : null;
  function sortKey(cell) {
    var value = cell.getAttribute("data-value");
    if (value !== null) {
      var number = parseFloat(value);
      return isNaN(number) ? Infinity : number;
    }
    var text = cell.textContent.trim();
    return /^[0-9]+$/.test(text) ? parseInt(text, 10) : text;
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") {
      return a === b ? 0 : (a < b ? -1 : 1);
    }
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  function sortBy(th, column) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var order = compare(sortKey(x.cells[column]), sortKey(y.cells[column]));
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  if (table && table.tHead) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.classList.add("sortable");
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(th, column); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(th, column);
        }
      });
    });
  }
  var filter = document.getElementById("row-filter");
  var shown = document.getElementById("rows-shown");
  function applyFilter() {
    var mode = filter.value, count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var keep = mode === "all" || (mode === "review" ?
        (row.classList.contains("flagged") || row.classList.contains("low")) :
        row.classList.contains(mode));
      row.hidden = !keep;
      if (keep) { count++; }
    });
    if (shown) { shown.textContent = count + " of " + body.rows.length + " slices shown"; }
  }
  if (filter && body) { filter.addEventListener("change", applyFilter); applyFilter(); }
  var viewer = document.getElementById("viewer");
  var picture = document.getElementById("viewer-img");
  var caption = document.getElementById("viewer-caption");
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.thumb") : null;
    if (!link || !viewer || !viewer.showModal) { return; }
    event.preventDefault();
    picture.src = link.getAttribute("data-full") || link.querySelector("img").src;
    caption.textContent = link.getAttribute("data-caption") || "";
    viewer.showModal();
  });
  if (viewer) {
    viewer.addEventListener("click", function (event) {
      if (event.target === viewer || event.target.id === "viewer-close") { viewer.close(); }
    });
  }
})();
"""

CSS = """
#area-table th.sortable { cursor: pointer; user-select: none; }
#area-table th[aria-sort="ascending"]::after { content: " ▲"; font-size: 10px; }
#area-table th[aria-sort="descending"]::after { content: " ▼"; font-size: 10px; }
#area-table tr.flagged > th:first-child { box-shadow: inset 4px 0 0 #e3b341; }
#area-table tr.low > th:first-child { color: #b42318; }
#area-table td.conf.low { color: #b42318; font-weight: 600; }
#area-table tbody tr.unlike { background: #fdecea; }
#area-table tr.unlike > th:first-child::after { content: " ⚠"; color: #b42318; }
.controls { margin: 8px 0; font-size: 14px; }
.controls select { font: inherit; margin: 0 8px; }
.review ol { margin: 4px 0; padding-left: 26px; columns: 2; column-gap: 32px; }
.review a, .warn a, #area-table a { color: var(--accent); }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.thumbs.large { grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); }
.thumbs figure { background: var(--soft); padding: 5px; border-radius: 6px; }
.thumbs figure.flagged { outline: 2px solid #e3b341; }
.thumbs figure.low { outline: 2px solid #d1242f; }
.thumbs figure.unlike { background: #fdecea; }
.thumbs img { width: 100%; height: auto; display: block; border-radius: 3px; }
.thumbs figcaption { font-size: 12px; padding-top: 3px; overflow-wrap: anywhere; }
dialog#viewer { max-width: 96vw; max-height: 96vh; padding: 8px; border: 0; border-radius: 8px; }
dialog#viewer::backdrop { background: rgba(0, 0, 0, .7); }
dialog#viewer img { max-width: 92vw; max-height: 84vh; display: block; }
dialog#viewer p { margin: 6px 0 0; font-size: 13px; }
dialog#viewer button { float: right; }
"""
