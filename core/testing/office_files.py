"""Real XLSX, XLS, CSV and PPTX files made on the fly (XlsxWriter stores formulas with their cached
values as Excel does; xlwt writes the legacy XLS format; python-pptx writes decks with notes)."""

from __future__ import annotations

from pathlib import Path


def make_xlsx(path: Path, sheets: dict[str, list[list[object]]], merges: dict[str, list[tuple]] | None = None,
              formulas: dict[str, list[tuple[str, str, object]]] | None = None) -> Path:
    """`sheets`: name -> rows; `merges`: name -> (first_row, first_col, last_row, last_col, value) (0-based);
    `formulas`: name -> (cell, formula, cached value)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    pct = wb.add_format({"num_format": "0.0%"})
    for name, rows in sheets.items():
        ws = wb.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, float) and 0 < value < 1:
                    ws.write(r, c, value, pct)
                else:
                    ws.write(r, c, value)
        for r0, c0, r1, c1, value in (merges or {}).get(name, []):
            ws.merge_range(r0, c0, r1, c1, value)
        for cell, formula, cached in (formulas or {}).get(name, []):
            ws.write_formula(cell, formula, None, cached)
    wb.close()
    return path


def million_row_xlsx(path: Path, rows: int = 1_048_576) -> Path:
    """The largest sheet Excel allows (1,048,576 rows of one number): 8 MB on disk, 180 MB of XML once unpacked.
    openpyxl writes the package with one row; the sheet's rows are then streamed into it as openpyxl writes them
    (the same bytes, a tenth of the time)."""
    import re
    import zipfile

    import openpyxl

    one = path.with_suffix(".one.xlsx")
    wb = openpyxl.Workbook(write_only=True)
    wb.create_sheet("claims").append([0])
    wb.save(str(one))
    with zipfile.ZipFile(one) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if not info.filename.startswith("xl/worksheets/sheet"):
                out.writestr(info, data)
                continue
            xml = data.decode()
            xml = re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="A1:A{rows}"', xml)
            head, rest = xml.split("<sheetData>", 1)
            tail = rest.split("</sheetData>", 1)[1]
            row_xml = re.search(r"<row .*?</row>", rest).group(0)  # the one row openpyxl wrote, as the pattern
            with out.open(info.filename, "w") as f:
                f.write(f"{head}<sheetData>".encode())
                for start in range(0, rows, 10_000):
                    f.write("".join(row_xml.replace('"1"', f'"{i + 1}"').replace("A1", f"A{i + 1}")
                                    .replace("<v>0</v>", f"<v>{i}</v>")
                                    for i in range(start, min(rows, start + 10_000))).encode())
                f.write(f"</sheetData>{tail}".encode())
    one.unlink()
    return path


def make_xls(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    for name, rows in sheets.items():
        ws = wb.add_sheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    ws.write(r, c, value)
    wb.save(str(path))
    return path


def make_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8") -> Path:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def make_pptx(path: Path, slides: list[dict]) -> Path:
    """Each slide: {"title": str, "body": [lines], "table": [[cells]], "notes": str} (all optional)."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for spec in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[5 if "table" in spec else 1])
        if spec.get("title") is not None:
            slide.shapes.title.text = spec["title"]
        else:
            slide.shapes.title._element.getparent().remove(slide.shapes.title._element)
        if spec.get("body"):
            if len(slide.placeholders) > 1:
                frame = slide.placeholders[1].text_frame
            else:
                frame = slide.shapes.add_textbox(Inches(0.5), Inches(1.5), Inches(9), Inches(1)).text_frame
            frame.text = spec["body"][0]
            for line in spec["body"][1:]:
                frame.add_paragraph().text = line
        if spec.get("table"):
            rows = spec["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(0.5), Inches(3), Inches(9), Inches(2))
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = str(value)
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    deck.save(str(path))
    return path
