"""Spreadsheets: XLSX (openpyxl), XLS (xlrd) and CSV.

Each sheet is a page (its 0-based index; citations say "sheet NAME") that starts with the sheet name as a
heading, then its rows as pipe rows: merged cells are filled with their value, formulas read as the
values Excel last computed (cached), a title row merged across the table becomes a caption line. The
chunker keeps rows whole and repeats the header row in every chunk of a long table.

An XLSX sheet streams in row by row (openpyxl's read-only reader): its rows and cells are counted by a pass over
the XML before it is parsed and again as the rows come, so a sheet over the limits is refused before it is in
memory; the merge ranges, which follow the cells in the XML, are applied once the sheet is read.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
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


def _sheet_lines(name: str, rows: Iterable[list[str]], budget: Budget | None) -> list[str]:
    """The sheet as text: its name as a heading, caption rows as lines, the table as pipe rows. `budget`
    counts the rows (None: the caller counted them as they streamed in)."""
    lines = [f"# {name}"]
    table: list[list[str | None]] = []
    for cells in rows:
        while cells and not cells[-1]:
            cells.pop()
        if budget is not None:
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
    check_zip(path, options, "XLSX")
    budget = Budget(path, options)
    try:
        reader = _open_xlsx(path)
    except Exception as exc:
        raise FileRejected(
            path, f"not a valid XLSX file ({type(exc).__name__}); re-save it from Excel and add it again"
        ) from exc
    try:
        sheets = [(sheet.name, rel.target) for sheet, rel in reader.parser.find_sheets()
                  if rel.target in reader.valid_files and "chartsheet" not in rel.Type]
        if len(sheets) > options.max_pages:
            raise FileRejected(path, f"{len(sheets):,} sheets, over the limit (ASSISTANT_MAX_PAGES)")
        pages: list[Page] = []
        for index, (name, part) in enumerate(sheets):
            lines = _sheet_lines(name, _xlsx_rows(reader, name, part, budget), None)
            if len(lines) > 1:
                pages.append(Page(text="\n".join(lines), page=index, label=f"sheet {name}"))
            if on_page is not None:
                on_page()
        title = reader.wb.properties.title or path.stem
    finally:
        reader.archive.close()
    return LoadedDocument(format="xlsx", pages=pages, title=title)


def _open_xlsx(path: Path):
    """openpyxl's read-only reader (data_only: a formula cell reads as the value Excel cached when the file was
    saved) up to, not including, its sheet objects: a ReadOnlyWorksheet reads its size on creation, which scans
    the whole sheet when the file has no <dimension> element. The sheets are streamed by `_xlsx_rows` instead."""
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    reader = ExcelReader(str(path), read_only=True, data_only=True)
    try:
        reader.read_manifest()
        reader.read_strings()
        reader.read_workbook()
        reader.read_properties()
        apply_stylesheet(reader.archive, reader.wb)
    except BaseException:
        reader.archive.close()
        raise
    return reader


def _number_format(wb, style_id: int) -> str:
    from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE

    try:
        fmt_id = wb._cell_styles[style_id].numFmtId
        if fmt_id < BUILTIN_FORMATS_MAX_SIZE:
            return BUILTIN_FORMATS.get(fmt_id, "")
        return wb._number_formats[fmt_id - BUILTIN_FORMATS_MAX_SIZE]
    except IndexError:  # a style the file does not define: the plain number
        return ""


# a <row> or <c> start tag; XML text cannot hold a raw "<", so only elements match
_ROW_OR_CELL = re.compile(rb"<(?:\w{1,16}:)?(row|c)[\s>/]")


def _precount(archive, part: str, budget: Budget) -> None:
    """Refuse a sheet with more rows or cells than the limits allow before parsing any of it: one pass over
    the decompressed XML counting start tags (a second each 150 MB), where parsing costs a minute per million
    rows."""
    rows = cells = 0
    tail = b""
    with archive.open(part) as src:
        while chunk := src.read(1 << 20):
            buf = tail + chunk
            end = 0
            for m in _ROW_OR_CELL.finditer(buf):
                if m.group(1) == b"row":
                    rows += 1
                else:
                    cells += 1
                end = m.end()
            tail = buf[max(end, len(buf) - 20):]  # a tag cut at the chunk's end is matched in the next pass
            if budget.paragraphs + rows > budget.options.max_paragraphs:
                raise budget.too_many_paragraphs()
            if budget.cells + cells > budget.options.max_cells:
                raise budget.too_many_cells()


_MAX_MERGE_CELLS = 10_000  # a merged range larger than this is not filled (one value repeated adds nothing)


def _xlsx_rows(reader, name: str, part: str, budget: Budget) -> Iterator[list[str]]:
    """Rows of the cells the file holds, streamed from the sheet's XML and counted (rows, cells, characters)
    as they come, merged ranges filled with their top-left value. Sparse: only cells present in the file are
    kept, so a stray formatted cell at XFD1048576 does not make the sheet a billion empty cells."""
    from openpyxl.worksheet._reader import WorkSheetParser
    from openpyxl.worksheet.cell_range import CellRange

    wb = reader.wb
    _precount(reader.archive, part, budget)
    by_row: dict[int, dict[int, str]] = {}
    with reader.archive.open(part) as src:  # what ReadOnlyWorksheet.iter_rows reads, without its padding of gaps
        parser = WorkSheetParser(src, reader.shared_strings, data_only=True, epoch=wb.epoch,
                                 date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
        for r, cells in parser.parse():
            budget.paragraph()
            row: dict[int, str] = {}
            for cell in cells:
                value = cell["value"]
                fmt = _number_format(wb, cell["style_id"]) if isinstance(value, float | int) else ""
                text = _fmt(value, fmt)
                budget.cell(text)
                if text:
                    row[cell["column"]] = text
            if row:
                by_row[r] = row
        # the merge ranges follow the cell data in the sheet's XML: the parser has them once the rows are read
        merges = parser.merged_cells.mergeCell if parser.merged_cells is not None else []
    for merge in merges:
        rng = CellRange(merge.ref)
        value = by_row.get(rng.min_row, {}).get(rng.min_col)
        if value is None or rng.size["rows"] * rng.size["columns"] > _MAX_MERGE_CELLS:
            continue
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                if c not in by_row.setdefault(r, {}):
                    budget.cell(value)
                by_row[r][c] = value
    if not by_row:
        return
    first_col = min(min(row) for row in by_row.values())
    last_col = max(max(row) for row in by_row.values())
    width = last_col - first_col + 1
    if len(by_row) * width > budget.options.max_cells:  # the table is written out as this many cells
        raise FileRejected(budget.path, f"sheet '{name}' spans {len(by_row):,} rows by {width:,} columns, over "
                           f"{budget.options.max_cells:,} cells (limit ASSISTANT_MAX_CELLS): delete stray cells far "
                           "from the table, or split the sheet")
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
