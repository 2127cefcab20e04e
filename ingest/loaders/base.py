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


def table_to_lines(rows: list[list[str | None]], compact: bool = False) -> list[str]:
    """Render a table as pipe-separated rows so the header and cells stay together in the text.

    `compact` drops empty cells and glues currency signs to their amounts: PDF table finders split
    merged and spacer columns into empty cells that only cost tokens ("| $ | 1,419 |  |").
    """
    lines = []
    for row in rows:
        cells = [" ".join((c or "").split()) for c in row]
        if compact:
            merged: list[str] = []
            for c in cells:
                if not c:
                    continue
                if merged and merged[-1] in ("$", "€", "£", "¥", "￥", "RMB", "CNY"):
                    merged[-1] = f"{merged[-1]} {c}"
                else:
                    merged.append(c)
            cells = merged
        if any(cells):
            lines.append("| " + " | ".join(cells) + " |")
    return lines
