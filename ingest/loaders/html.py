"""HTML: headings become Markdown headings, tables pipe rows; scripts, styles and navigation dropped.

Text is emitted once, by the innermost block that holds it (leaf blocks): a page nesting a thousand
<p> or <blockquote> elements yields each text once, not every ancestor's whole text again.
"""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from ingest.loaders.base import DEFAULT_OPTIONS, Budget, LoadedDocument, Page, ParseOptions, table_to_lines
from ingest.loaders.text import decode_bytes

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# blocks whose text gets its own line (and a Markdown marker for headings and list items)
_BLOCKS = _HEADINGS | {
    "p", "li", "pre", "blockquote", "dt", "dd", "div", "section", "article", "main", "aside", "figure",
    "figcaption", "address", "form", "fieldset", "details", "summary", "body", "caption", "ul", "ol", "dl",
}
_DROP = ["script", "style", "nav", "noscript", "template", "header", "footer"]


def load_html(path: Path, options: ParseOptions = DEFAULT_OPTIONS) -> LoadedDocument:
    budget = Budget(path, options)
    soup = BeautifulSoup(decode_bytes(path.read_bytes(), path), "html.parser")
    for tag in soup(_DROP):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else path.stem
    body = soup.body or soup
    owner_of: dict[int, tuple[Tag | None, bool]] = {}  # id(tag) -> (innermost block, inside a table)

    def owner(tag: Tag) -> tuple[Tag | None, bool]:
        # memoised walk up the tree: linear in the document even when nesting is thousands deep
        chain: list[Tag] = []
        node: Tag | None = tag
        found: tuple[Tag | None, bool] = (None, False)
        while node is not None:
            if id(node) in owner_of:
                found = owner_of[id(node)]
                break
            chain.append(node)
            node = node.parent
        for t in reversed(chain):
            block, in_table = found
            found = (t if t.name in _BLOCKS else block, in_table or t.name == "table")
            owner_of[id(t)] = found
        return found

    lines: list[str] = []
    current: list[str] = []
    current_block: Tag | None = None

    def flush() -> None:
        nonlocal current
        text = " ".join(" ".join(current).split())
        current = []
        if not text:
            return
        name = current_block.name if current_block is not None else ""
        if name in _HEADINGS:
            lines.append("#" * int(name[1:]) + " " + text)
        elif name == "li":
            lines.append("- " + text)
        else:
            lines.append(text)
        lines.append("")
        budget.paragraph(text)

    for node in body.descendants:
        if isinstance(node, Tag):
            if node.name == "br":
                flush()
            elif node.name == "table" and not (node.parent is not None and owner(node.parent)[1]):
                flush()  # an outermost table: its own rows, nested tables' text inside their cells
                rows = [
                    [c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"]) if _row_of(c) is tr]
                    for tr in node.find_all("tr")
                    if tr.find_parent("table") is node
                ]
                for row in rows:
                    budget.paragraph(" ".join(row))
                lines.extend(table_to_lines(rows))
                lines.append("")
            continue
        if not isinstance(node, NavigableString) or isinstance(node, PreformattedString) or node.parent is None:
            continue
        block, in_table = owner(node.parent)
        if in_table:
            continue
        if block is not current_block:
            flush()
            current_block = block
        current.append(str(node))
    flush()
    return LoadedDocument(format="html", pages=[Page(text="\n".join(lines))], title=title)


def _row_of(cell: Tag) -> Tag | None:
    return cell.find_parent("tr")
