"""Regenerate the demo corpus's PDF and DOCX files from the text sources beside this script.

The outputs are committed (the quick start needs no font or generator); run this only after editing a
source:  .venv/bin/python scripts/corpus/build_corpus.py
Source syntax: '# ' title, '## ' heading, [TABLE caption] rows with '|' [/TABLE], [COLUMNS] ... [/COLUMNS]
for a two-column passage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import docx
from fpdf import FPDF

HERE = Path(__file__).parent
CORPUS = HERE.parent.parent / "corpus"
sys.path.insert(0, str(HERE.parent.parent))

from core.testing.pdfs import add_fonts  # noqa: E402  (one font set-up for tests and corpus)


def _blocks(text: str):
    lines = text.strip().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("[TABLE"):
            caption = line[len("[TABLE") :].strip(" ]")
            rows = []
            i += 1
            while not lines[i].startswith("[/TABLE]"):
                rows.append(lines[i].split("|"))
                i += 1
            yield "table", (caption, rows)
        elif line.startswith("[COLUMNS]"):
            body = []
            i += 1
            while not lines[i].startswith("[/COLUMNS]"):
                body.append(lines[i])
                i += 1
            yield "columns", body
        elif line.startswith("# "):
            yield "title", line[2:]
        elif line.startswith("## "):
            yield "heading", line[3:]
        elif line.strip():
            yield "para", line
        i += 1


def build_pdf(source: Path, target: Path) -> None:
    pdf = FPDF(format="A4")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_title(source.stem)
    family = add_fonts(pdf)
    pdf.add_page()
    page_break = False
    for kind, value in _blocks(source.read_text(encoding="utf-8")):
        if page_break:
            pdf.add_page()
            page_break = False
        if kind == "title":
            pdf.set_font(family, size=16)
            pdf.multi_cell(0, 10, value, align="C", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "heading":
            pdf.ln(2)
            pdf.set_font(family, size=13)
            pdf.multi_cell(0, 8, value, new_x="LMARGIN", new_y="NEXT")
        elif kind == "para":
            pdf.set_font(family, size=10.5)
            is_sub = value[:3].replace(".", "").isdigit() and len(value) < 40
            pdf.multi_cell(0, 6.5 if not is_sub else 7, value, new_x="LMARGIN", new_y="NEXT")
        elif kind == "table":
            caption, rows = value
            pdf.set_font(family, size=10)
            pdf.multi_cell(0, 7, caption, new_x="LMARGIN", new_y="NEXT")
            with pdf.table(first_row_as_headings=True, line_height=6.5) as table:
                for row in rows:
                    r = table.row()
                    for cell in row:
                        r.cell(cell.strip())
            pdf.ln(3)
        elif kind == "columns":
            pdf.add_page()  # the two-column section gets a page of its own, as in printed manuals
            pdf.set_font(family, size=10)
            with pdf.text_columns(ncols=2, gutter=10, text_align="LEFT") as cols:
                for line in value:
                    cols.write(line + "\n")
                    if not line[:1].isdigit():
                        cols.ln()
            page_break = True
    pdf.output(str(target))


def build_docx(source: Path, target: Path) -> None:
    document = docx.Document()
    document.core_properties.title = source.stem
    for kind, value in _blocks(source.read_text(encoding="utf-8")):
        if kind == "title":
            document.add_heading(value, level=0)
        elif kind == "heading":
            document.add_heading(value, level=1)
        elif kind == "para":
            document.add_paragraph(value)
    document.save(str(target))


def main() -> None:
    build_pdf(HERE / "policy_terms_zh.txt", CORPUS / "安心意外伤害保险条款.pdf")
    build_pdf(HERE / "claims_manual_en.txt", CORPUS / "claims_handling_manual.pdf")
    build_docx(HERE / "service_agreement_en.txt", CORPUS / "claims_services_agreement.docx")
    print(f"wrote demo corpus into {CORPUS}")


if __name__ == "__main__":
    main()
