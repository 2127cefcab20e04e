"""DOCX in body order: heading styles become Markdown headings, tables pipe rows."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from core.errors import FileRejected
from ingest.loaders.base import DEFAULT_OPTIONS, Budget, LoadedDocument, Page, ParseOptions, check_zip, table_to_lines

_HEADING = re.compile(r"^(?:Heading|标题)\s*(\d)$", re.IGNORECASE)


def load_docx(path: Path, options: ParseOptions = DEFAULT_OPTIONS) -> LoadedDocument:
    check_zip(path, options, "DOCX")
    budget = Budget(path, options)
    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        raise FileRejected(
            path, f"not a valid DOCX file ({type(exc).__name__}); re-save it from Word and add it again"
        ) from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            budget.paragraph(text)  # empty ones count too: a million of them is an attack, not a document
            if not text:
                continue
            style = block.style.name if block.style is not None else ""
            m = _HEADING.match(style or "")
            if m:
                lines.append("#" * int(m.group(1)) + " " + text)
            elif style == "Title":
                lines.append("# " + text)
            else:
                lines.append(text)
        elif isinstance(block, Table):
            rows = []
            for row in block.rows:
                rows.append([cell.text for cell in row.cells])
                budget.paragraph(" ".join(rows[-1]))
            lines.extend(table_to_lines(rows))
            lines.append("")
    title = document.core_properties.title or path.stem
    return LoadedDocument(format="docx", pages=[Page(text="\n".join(lines))], title=title)
