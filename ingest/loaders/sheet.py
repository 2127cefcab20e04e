"""Spreadsheets: XLSX (openpyxl), XLS (xlrd) and CSV.

Each sheet is a page (its 0-based index; citations say "sheet NAME") that starts with the sheet name as a
heading, then its rows as pipe rows: merged cells are filled with their value, formulas read as the
values Excel last computed (cached), a title row merged across the table becomes a caption line. The
chunker keeps rows whole and repeats the header row in every chunk of a long table.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.errors import FileRejected
from ingest.loaders.base import DEFAULT_OPTIONS, Budget, LoadedDocument, Page, ParseOptions, check_zip, table_to_lines
from ingest.loaders.text import decode_bytes


def _fmt(value: object, number_format: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float | int):
        if "%" in number_format:
            return f"{value * 100:.{_decimals(number_format)}f}%"
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}" if isinstance(value, float) else str(value)
    return " ".join(str(value).split())


def _decimals(number_format: str) -> int:
    head = number_format.split("%")[0]
    return len(head.split(".")[1]) if "." in head else 0


def _sheet_lines(name: str, rows: Iterable[list[str]], budget: Budget) -> list[str]:
    """The sheet as text: its name as a heading, caption rows as lines, the table as pipe rows."""
    lines = [f"# {name}"]
    table: list[list[str | None]] = []
    for cells in rows:
        while cells and not cells[-1]:
            cells.pop()
        budget.paragraph(" ".join(cells))
        if not any(cells):
            continue
        filled = [c for c in cells if c]
        if len(set(filled)) == 1 and len(filled) > 1 and not table:
            lines.append(filled[0])  # a title merged across the top of the table
        elif len(filled) == 1 and not table:
            lines.append(filled[0])  # a caption or note above the header
        else:
            table.append(list(cells))
    if table:
        width = max(len(r) for r in table)
        lines.append("")
        lines.extend(table_to_lines([r + [""] * (width - len(r)) for r in table]))
    return lines


def load_xlsx(path: Path, options: ParseOptions = DEFAULT_OPTIONS, on_page=None) -> LoadedDocument:
    import openpyxl

    check_zip(path, options, "XLSX")
    budget = Budget(path, options)
    try:
        # data_only: a formula cell reads as the value Excel cached when the file was saved
        wb = openpyxl.load_workbook(str(path), data_only=True)
    except Exception as exc:
        raise FileRejected(
            path, f"not a valid XLSX file ({type(exc).__name__}); re-save it from Excel and add it again"
        ) from exc
    if len(wb.worksheets) > options.max_pages:
        raise FileRejected(path, f"{len(wb.worksheets):,} sheets, over the limit (ASSISTANT_MAX_PAGES)")
    pages: list[Page] = []
    for index, ws in enumerate(wb.worksheets):
        lines = _sheet_lines(ws.title, _xlsx_rows(ws), budget)
        if len(lines) > 1:
            pages.append(Page(text="\n".join(lines), page=index, label=f"sheet {ws.title}"))
        if on_page is not None:
            on_page()
    return LoadedDocument(format="xlsx", pages=pages, title=wb.properties.title or path.stem)


def _xlsx_rows(ws) -> Iterator[list[str]]:
    """Rows of the cells the file holds (sparse: a stray formatted cell at XFD1048576 does not make the
    sheet a billion empty cells), merged ranges filled with their top-left value."""
    cells: dict[tuple[int, int], str] = {}
    for (r, c), cell in ws._cells.items():  # the parsed cells only; iter_rows would create the whole grid
        if cell.value is not None:
            cells[(r, c)] = _fmt(cell.value, cell.number_format or "")
    for rng in ws.merged_cells.ranges:
        value = cells.get((rng.min_row, rng.min_col))
        if value is None or (rng.max_row - rng.min_row + 1) * (rng.max_col - rng.min_col + 1) > 10_000:
            continue
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                cells[(r, c)] = value
    if not cells:
        return
    first_col = min(c for _, c in cells)
    last_col = max(c for _, c in cells)
    by_row: dict[int, dict[int, str]] = {}
    for (r, c), v in cells.items():
        by_row.setdefault(r, {})[c] = v
    for r in sorted(by_row):
        row = by_row[r]
        yield [row.get(c, "") for c in range(first_col, last_col + 1)]


def load_xls(path: Path, options: ParseOptions = DEFAULT_OPTIONS, on_page=None) -> LoadedDocument:
    import xlrd

    budget = Budget(path, options)
    try:
        book = xlrd.open_workbook(str(path), formatting_info=True, on_demand=True)
    except Exception as exc:
        raise FileRejected(
            path, f"not a valid XLS file ({type(exc).__name__}); re-save it from Excel and add it again"
        ) from exc
    if book.nsheets > options.max_pages:
        raise FileRejected(path, f"{book.nsheets:,} sheets, over the limit (ASSISTANT_MAX_PAGES)")
    pages: list[Page] = []
    for index in range(book.nsheets):
        sh = book.sheet_by_index(index)
        merged: dict[tuple[int, int], tuple[int, int]] = {}
        for r0, r1, c0, c1 in sh.merged_cells:
            for r in range(r0, r1):
                for c in range(c0, c1):
                    merged[(r, c)] = (r0, c0)

        def value(r: int, c: int, sh=sh, merged=merged) -> str:
            r, c = merged.get((r, c), (r, c))
            cell = sh.cell(r, c)
            if cell.ctype == xlrd.XL_CELL_DATE:
                return _fmt(xlrd.xldate.xldate_as_datetime(cell.value, book.datemode))
            if cell.ctype == xlrd.XL_CELL_BOOLEAN:
                return _fmt(bool(cell.value))
            if cell.ctype in (xlrd.XL_CELL_ERROR, xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                return ""
            fmt = book.format_map.get(book.xf_list[cell.xf_index].format_key) if book.xf_list else None
            return _fmt(cell.value, fmt.format_str if fmt is not None else "")

        rows = ([value(r, c) for c in range(sh.ncols)] for r in range(sh.nrows))
        lines = _sheet_lines(sh.name, rows, budget)
        if len(lines) > 1:
            pages.append(Page(text="\n".join(lines), page=index, label=f"sheet {sh.name}"))
        book.unload_sheet(index)
        if on_page is not None:
            on_page()
    return LoadedDocument(format="xls", pages=pages, title=path.stem)


def load_csv(path: Path, options: ParseOptions = DEFAULT_OPTIONS, on_page=None) -> LoadedDocument:
    budget = Budget(path, options)
    text = decode_bytes(path.read_bytes(), path)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(max(options.max_text_chars, 131072))
    try:
        rows = [[_fmt(c) for c in row] for row in csv.reader(io.StringIO(text), dialect)]
    except csv.Error as exc:
        raise FileRejected(path, f"malformed CSV ({exc}); re-export it as UTF-8 CSV") from exc
    lines = _sheet_lines(path.stem, rows, budget)
    return LoadedDocument(format="csv", pages=[Page(text="\n".join(lines), page=0, label=f"sheet {path.stem}")],
                          title=path.stem)
