"""What every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Page:
    text: str
    page: int | None = None  # 0-based page index for paginated formats, None otherwise


@dataclass
class LoadedDocument:
    format: str
    pages: list[Page]
    title: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def page_count(self) -> int:
        return len(self.pages)


def table_to_lines(rows: list[list[str | None]]) -> list[str]:
    """Render a table as pipe-separated rows so the header and cells stay together in the text."""
    lines = []
    for row in rows:
        cells = [" ".join((c or "").split()) for c in row]
        if any(cells):
            lines.append("| " + " | ".join(cells) + " |")
    return lines
