"""HTML: headings become Markdown headings, tables pipe rows; scripts, styles and navigation dropped."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup

from ingest.loaders.base import LoadedDocument, Page, table_to_lines
from ingest.loaders.text import decode_bytes

_BLOCKS = ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "table", "pre", "blockquote", "dt", "dd"]


def load_html(path: Path) -> LoadedDocument:
    soup = BeautifulSoup(decode_bytes(path.read_bytes(), path), "html.parser")
    for tag in soup(["script", "style", "nav", "noscript", "template", "header", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else path.stem
    lines: list[str] = []
    body = soup.body or soup
    for el in body.find_all(_BLOCKS):
        if el.find_parent(["table", "li", "pre", "blockquote"]) is not None and el.name != "table":
            continue  # its text is emitted with the enclosing block
        if el.name == "table":
            if el.find_parent("table") is not None:
                continue
            rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in el.find_all("tr")]
            lines.extend(table_to_lines(rows))
            lines.append("")
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name[0] == "h" and el.name[1:].isdigit():
            lines.append("#" * int(el.name[1:]) + " " + text)
        elif el.name == "li":
            lines.append("- " + text)
        else:
            lines.append(text)
        lines.append("")
    if not any(line.strip() for line in lines):  # pages built from bare divs
        lines = [" ".join(s.split()) for s in body.get_text("\n").split("\n") if s.strip()]
    return LoadedDocument(format="html", pages=[Page(text="\n".join(lines))], title=title)
