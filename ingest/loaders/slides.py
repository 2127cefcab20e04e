"""PPTX (python-pptx): each slide a page (0-based; citations say "slide N"), its title a heading, then the
body in reading order (text boxes, tables as pipe rows, grouped shapes) and the speaker notes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from core.errors import FileRejected
from ingest.loaders.base import DEFAULT_OPTIONS, Budget, LoadedDocument, Page, ParseOptions, check_zip, table_to_lines


def load_pptx(
    path: Path, options: ParseOptions = DEFAULT_OPTIONS, on_page: Callable[[], None] | None = None
) -> LoadedDocument:
    from pptx import Presentation

    check_zip(path, options, "PPTX")
    budget = Budget(path, options)
    try:
        deck = Presentation(str(path))
    except Exception as exc:
        raise FileRejected(
            path, f"not a valid PPTX file ({type(exc).__name__}); re-save it from PowerPoint and add it again"
        ) from exc
    slides = list(deck.slides)
    if len(slides) > options.max_pages:
        raise FileRejected(path, f"{len(slides):,} slides, over the limit (ASSISTANT_MAX_PAGES); split the deck")
    pages: list[Page] = []
    for index, slide in enumerate(slides):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        # every slide starts a heading, so an untitled slide is not filed under the previous slide's title
        lines = [f"# {title or f'Slide {index + 1}'}"]
        skip = {title_shape.shape_id} if title_shape is not None else set()
        lines.extend(_shape_lines(slide.shapes, skip, budget))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            text = notes.text.strip() if notes is not None else ""
            if text:
                budget.paragraph(text)
                lines.extend(["", "Speaker notes:", *[ln.strip() for ln in text.splitlines() if ln.strip()]])
        pages.append(Page(text="\n".join(lines), page=index, label=f"slide {index + 1}"))
        if on_page is not None:
            on_page()
    title = deck.core_properties.title or path.stem
    return LoadedDocument(format="pptx", pages=pages, title=title)


def _reading_order(shapes: Iterable) -> list:
    return sorted(shapes, key=lambda s: ((s.top or 0) // 50_000, s.left or 0))  # rows of ~1.4 mm, then left


def _shape_lines(shapes: Iterable, skip: set[int], budget: Budget) -> list[str]:
    lines: list[str] = []
    for shape in _reading_order(shapes):
        if shape.shape_id in skip:
            continue
        if shape.shape_type is not None and shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            lines.extend(_shape_lines(shape.shapes, skip, budget))
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = []
            for row in shape.table.rows:
                rows.append([cell.text for cell in row.cells])
                budget.paragraph(" ".join(rows[-1]))
            lines.extend(["", *table_to_lines(rows), ""])
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            for para in shape.text_frame.paragraphs:
                text = " ".join("".join(run.text for run in para.runs).split())
                budget.paragraph(text)
                if text:
                    lines.append(("  " * para.level + "- " + text) if para.level else text)
    return lines
