"""index.html of the results site: the ranked table, sortable by clicking a header, and the "Not ranked" table.

Self-contained: inline CSS and a small inline script, no external script, stylesheet, font or image, so it works
from a file:// URL offline. Every text is HTML-escaped (html.escape, quotes included). A Content-Security-Policy
allows exactly that stylesheet and that script (by their sha256) and nothing else, so even a string that escaped
escaping could not run.

The sorter: a header's button sorts the rows by that column, ascending, then descending on the next click, and
sets the header's aria-sort. Numeric columns sort by each cell's data-sort (a number); a cell without a value
(data-sort "" or the text "-") sorts last in either direction; ties keep their current order.
"""
from __future__ import annotations

import base64
import hashlib
import html
from typing import Sequence

from vmb.scoring.results.table import NONE, Cell, Column, NotRanked

TABLE_ID = "ranked"

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1a1a1a}
table{border-collapse:collapse;font-size:.9em}
caption{text-align:left;font-weight:bold;padding:.3em 0}
td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}
thead th{background:#eef1f5;position:sticky;top:0}
th button{font:inherit;font-weight:bold;border:0;background:none;padding:0;cursor:pointer;text-align:left}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:.85em}
tbody tr:nth-child(even){background:#f7f8fa}
ul{margin:0;padding-left:1.2em}
"""

JS = """
(function () {
  "use strict";
  var table = document.getElementById("%s");
  if (!table) { return; }
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function key(row, index) {
    var cell = row.cells[index], sort = cell.getAttribute("data-sort");
    var text = sort === null ? cell.textContent.trim() : sort;
    return text === "%s" ? "" : text;
  }
  headers.forEach(function (th, index) {
    th.querySelector("button").addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      var numeric = th.getAttribute("data-type") === "number";
      var body = table.tBodies[0];
      var rows = Array.prototype.map.call(body.rows, function (row, position) {
        return {row: row, key: key(row, index), position: position};
      });
      rows.sort(function (a, b) {
        if (a.key === "" || b.key === "") {
          return (a.key === "") - (b.key === "") || a.position - b.position;
        }
        var order = numeric ? Number(a.key) - Number(b.key)
          : a.key.localeCompare(b.key, undefined, {numeric: true, sensitivity: "base"});
        return (descending ? -order : order) || a.position - b.position;
      });
      rows.forEach(function (item) { body.appendChild(item.row); });
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    });
  });
}());
""" % (TABLE_ID, NONE)


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; style-src {_hash(CSS)}; script-src {_hash(JS)}; base-uri 'none'; "
       "form-action 'none'")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _link(text: str, link: str | None) -> str:
    return f'<a href="{esc(link)}">{esc(text)}</a>' if link else esc(text)


def _cell(cell: Cell, column: Column) -> str:
    if not column.numeric:
        return f"<td>{_link(cell.text, cell.link)}</td>"
    note = f' <span class="note">({esc(cell.note)})</span>' if cell.note else ""
    sort = "" if cell.sort is None else repr(float(cell.sort))
    return f'<td class="num" data-sort="{esc(sort)}">{_link(cell.text, cell.link)}{note}</td>'


def _ranked_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> str:
    ranked = ' aria-sort="ascending"'  # the rows come ranked: the rank column (the first) is sorted ascending
    head = "".join(
        f'<th scope="col" data-type="{"number" if c.numeric else "text"}" title="{esc(c.title)}"'
        f'{ranked if i == 0 else ""}><button type="button">{esc(c.name)}</button></th>'
        for i, c in enumerate(columns))
    body = "\n".join("<tr>" + "".join(_cell(cell, c) for cell, c in zip(row, columns)) + "</tr>" for row in rows)
    empty = f'<tr><td colspan="{len(columns)}">No valid submission with a benchmark score.</td></tr>'
    return (f'<table id="{TABLE_ID}"><caption>Ranked by benchmark score (click a header to sort)</caption>'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body or empty}\n</tbody></table>")


def _not_ranked_table(entries: Sequence[NotRanked]) -> str:
    if not entries:
        return "<p>None: every submission is ranked.</p>"
    rows = "\n".join(f"<tr><td>{_link(e.name, e.link)}</td><td><ul>"
                     + "".join(f"<li>{esc(reason)}</li>" for reason in e.reasons) + "</ul></td></tr>"
                     for e in entries)
    return (f'<table id="not-ranked"><thead><tr><th scope="col">submission</th><th scope="col">why</th></tr></thead>'
            f"\n<tbody>\n{rows}\n</tbody></table>")


def index_html(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], entries: Sequence[NotRanked],
               intro: str, csv_name: str) -> str:
    """The page: `intro` (one paragraph of plain text), the ranked table, the Not ranked table, the CSV's link."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>VMB results</title><style>{CSS}</style></head>\n<body>\n<h1>VMB results</h1>\n"
            f"<p>{esc(intro)}</p>\n{_ranked_table(columns, rows)}\n"
            f'<p>The ranked table as CSV: <a href="{esc(csv_name)}">{esc(csv_name)}</a>.</p>\n'
            f"<h2>Not ranked</h2>\n{_not_ranked_table(entries)}\n<script>{JS}</script>\n</body></html>\n")
