"""Report rendering shared by the scorer and the benchmarks: one list of blocks (headings, paragraphs, tables,
lists, images) rendered as terminal text, Markdown or HTML, so that all of them say the same thing; and PNG
figures drawn with matplotlib's Agg backend (no display needed). Text is escaped in HTML and Markdown.
"""
from __future__ import annotations

import html
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vmb.errors import VMBError

Block = tuple  # ("h", text) | ("p", text) | ("table", header, rows) | ("list", items) | ("img", file, caption)


class ReportError(VMBError):
    """The report folder cannot be written."""


def system_line(system: dict) -> str:
    """A compact description of a system.json (vmb.record.system.describe_system): accelerators and count, CPU,
    memory, framework."""
    def get(key: str) -> str:
        value = system.get(key)
        return "?" if value in (None, "") else str(value)

    if system.get("device_type") == "cuda":
        per_node, nodes = system.get("accelerators_per_node"), system.get("number_of_nodes")
        count = per_node * nodes if all(type(n) is int for n in (per_node, nodes)) else "?"
        devices = f"{count} x {get('accelerator_model_name')} ({get('accelerator_memory_capacity')})"
    else:
        processes = get("processes")
        devices = f"CPU only, {processes} process{'' if processes == '1' else 'es'}"
    return (f"{devices}; CPU {get('host_processor_model_name')} ({get('host_processor_core_count')} cores); "
            f"memory {get('host_memory_capacity')}; {get('framework')}")


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, indented by two spaces, one line per row."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def format_text(content: list[Block]) -> str:
    """The blocks as terminal text (images are left out); a blank line before each heading and each paragraph
    that does not follow a heading."""
    lines: list[str] = []
    previous = None
    for block in content:
        kind = block[0]
        if kind == "h" or (kind == "p" and previous != "h"):
            lines.append("")
        if kind in ("h", "p"):
            lines.append(block[1])
        elif kind == "table":
            lines += text_table(block[1], block[2])
        elif kind == "list":
            lines += [f"  {item}" for item in block[1]]
        previous = kind
    return "\n".join(lines).lstrip("\n")


def _md_cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def format_markdown(content: list[Block]) -> str:
    lines = []
    for block in content:
        kind = block[0]
        if kind == "h":
            lines += [f"{'#' if not lines else '##'} {_md_cell(block[1])}", ""]
        elif kind == "p":
            lines += [_md_cell(block[1]), ""]
        elif kind == "table":
            lines.append("| " + " | ".join(map(_md_cell, block[1])) + " |")
            lines.append("|" + "---|" * len(block[1]))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block[2]]
            lines.append("")
        elif kind == "list":
            lines += [f"- {_md_cell(item)}" for item in block[1]] + [""]
        elif kind == "img":
            lines += [f"![{_md_cell(block[2])}]({block[1]})", ""]
    return "\n".join(lines)


def format_html(content: list[Block], title: str = "VMB score") -> str:
    esc = html.escape
    body = []
    for block in content:
        kind = block[0]
        if kind == "h":
            tag = "h1" if not body else "h2"
            body.append(f"<{tag}>{esc(block[1])}</{tag}>")
        elif kind == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{esc(cell)}</th>" for cell in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "img":
            body.append(f'<figure><img src="{esc(block[1])}" alt="{esc(block[2])}">'
                        f"<figcaption>{esc(block[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:80em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{esc(title)}</title><style>{style}</style>'
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def save_figure(fig: Figure, path: Path) -> None:
    """Lay out `fig` and write it to `path` as a PNG (100 dpi)."""
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def table_figure(header: list[str], rows: list[list[str]], title: str) -> Figure:
    """A table drawn as a figure (for a report's comparison table image)."""
    rows = rows or [["-"] * len(header)]
    chars = sum(max(len(cell) for cell in column) + 2 for column in zip(header, *rows))
    fig = Figure(figsize=(max(4.0, 0.075 * chars + 0.4), 0.8 + 0.25 * (len(rows) + 1)))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
    ax.set_title(title)
    return fig
