"""Structure-aware chunking: pages -> sections (by heading) -> token-bounded chunks.

1. Lines are scanned for headings (see `headings.py`); each section keeps its heading path
   (e.g. "第三章 保险责任 > 第八条 意外身故保险金"). A page break also starts a new segment, so each chunk's
   page is exact for citations.
2. A section longer than `chunk_size` tokens (the embedding model's own tokens) is split with
   LangChain's RecursiveCharacterTextSplitter on paragraph, line and sentence boundaries, CJK
   punctuation (。！？；) included, with `chunk_overlap` tokens of overlap.
   A section holding a table is split between rows, never inside one, and every piece that continues
   a table starts with the table's header row again, so a chunk of a rate table still says what its
   columns are.
3. Fragments under `min_chunk_tokens` (a lone chapter title, a two-line clause) are merged with a
   neighbour when the result still fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.chunking.headings import Heading, detect_heading
from ingest.loaders.base import LoadedDocument

CHUNKER_VERSION = 2  # 2: tables split between rows, header row repeated
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]
PATH_SEP = " > "


@dataclass
class Chunk:
    text: str
    page: int | None
    page_end: int | None
    clause: str
    tokens: int
    clauses: list[str] = field(default_factory=list)


@dataclass
class _Segment:
    path: tuple[str, ...]
    page: int | None
    lines: list[str] = field(default_factory=list)


def _segments(doc: LoadedDocument) -> list[_Segment]:
    stack: list[Heading] = []
    segments: list[_Segment] = []
    for page in doc.pages:
        current: _Segment | None = None
        for line in page.text.split("\n"):
            heading = detect_heading(line)
            if heading is not None:
                while stack and stack[-1].rank >= heading.rank:
                    stack.pop()
                stack.append(heading)
                current = None
            if current is None:
                current = _Segment(path=tuple(h.label for h in stack), page=page.page)
                segments.append(current)
            current.lines.append(line.rstrip())
    for seg in segments:  # trim blank edges, keep inner paragraph breaks
        while seg.lines and not seg.lines[0].strip():
            seg.lines.pop(0)
        while seg.lines and not seg.lines[-1].strip():
            seg.lines.pop()
    return [s for s in segments if s.lines]


def chunk_document(
    doc: LoadedDocument,
    count_tokens: Callable[[str], int],
    chunk_size: int,
    chunk_overlap: int,
    min_chunk_tokens: int,
) -> list[Chunk]:
    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        length_function=count_tokens,
        keep_separator="end",
        strip_whitespace=True,
    )
    pieces: list[Chunk] = []
    for seg in _segments(doc):
        text = _squeeze_blank_lines("\n".join(seg.lines))
        clause = PATH_SEP.join(seg.path)
        n = count_tokens(text)
        parts = [text] if n <= chunk_size else _split_section(text, splitter, count_tokens, chunk_size)
        for part in parts:
            if part.strip():
                tokens = n if len(parts) == 1 else count_tokens(part)
                pieces.append(Chunk(part, seg.page, seg.page, clause, tokens, [clause] if clause else []))
    # a sheet or slide is cited by its label: a small one is not merged into its neighbour's chunk
    same_page_only = any(p.label for p in doc.pages)
    return _merge_small(pieces, count_tokens, chunk_size, min_chunk_tokens, same_page_only)


def _is_row(line: str) -> bool:
    s = line.strip()
    return len(s) > 1 and s.startswith("|") and s.endswith("|")


def _split_section(
    text: str, splitter: RecursiveCharacterTextSplitter, count_tokens: Callable[[str], int], chunk_size: int
) -> list[str]:
    """Split an over-long section: prose with the splitter, tables between rows with the header repeated."""
    lines = text.split("\n")
    if not any(_is_row(ln) for ln in lines):
        return splitter.split_text(text)
    blocks: list[tuple[bool, list[str]]] = []  # (is_table, lines)
    for line in lines:
        table = _is_row(line)
        if blocks and blocks[-1][0] == table:
            blocks[-1][1].append(line)
        else:
            blocks.append((table, [line]))
    pieces: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal current, size
        if any(ln.strip() for ln in current):
            pieces.append("\n".join(current).strip("\n"))
        current, size = [], 0

    def add(unit: str, tokens: int, header: str | None) -> None:
        nonlocal size
        if current and size + tokens + 1 > chunk_size:
            flush()
            if header is not None:  # a table continues: its header row first
                current.append(header)
                size = count_tokens(header) + 1
        current.append(unit)
        size += tokens + 1

    for is_table, block in blocks:
        if not is_table:
            prose = "\n".join(block)
            if not prose.strip():
                if current:
                    current.append("")
                continue
            n = count_tokens(prose)
            for part in [prose] if n <= chunk_size else splitter.split_text(prose):
                add(part, n if len(prose) == len(part) else count_tokens(part), None)
            continue
        header, rows = block[0], block[1:]
        header_tokens = count_tokens(header)
        if not rows:
            add(header, header_tokens, None)
            continue
        for i, row in enumerate(rows):
            tokens = count_tokens(row)
            if tokens + header_tokens + 1 > chunk_size:  # one row longer than a chunk: split as prose
                flush()
                pieces.extend(splitter.split_text(row))
            elif i == 0:  # the header never ends a piece on its own: it goes with the first row
                add(f"{header}\n{row}", header_tokens + tokens + 1, None)
            else:
                add(row, tokens, header)
    flush()
    return pieces


def _squeeze_blank_lines(text: str) -> str:
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)


def _join(a: Chunk, b: Chunk, count_tokens: Callable[[str], int]) -> Chunk:
    text = a.text + "\n" + b.text
    main = a if a.tokens >= b.tokens else b
    merged = a.clauses + [c for c in b.clauses if c not in a.clauses]
    # an ancestor ("第一章 总则") is implied by its descendants ("第一章 总则 > 第一条 ...")
    clauses = [c for c in merged if not any(o != c and o.startswith(c + PATH_SEP) for o in merged)]
    # a lone heading merged forward is an ancestor of the next clause: keep the deeper path
    clause = b.clause if b.clause.startswith(a.clause) else main.clause
    pages = [p for p in (a.page, b.page, a.page_end, b.page_end) if p is not None]
    return Chunk(
        text=text,
        # cite the page holding most of the text (a merged cover line must not move the citation)
        page=main.page if main.page is not None else (a.page if a.page is not None else b.page),
        page_end=max(pages) if pages else None,
        clause=clause,
        tokens=count_tokens(text),
        clauses=clauses,
    )


def _merge_small(
    pieces: list[Chunk],
    count_tokens: Callable[[str], int],
    chunk_size: int,
    min_tokens: int,
    same_page_only: bool = False,
) -> list[Chunk]:
    out: list[Chunk] = []
    pending: Chunk | None = None

    def fits(a: Chunk, b: Chunk) -> bool:
        return a.tokens + b.tokens + 1 <= chunk_size and not (same_page_only and a.page != b.page)

    for piece in pieces:
        if pending is not None:
            if fits(pending, piece):
                piece = _join(pending, piece, count_tokens)
            else:
                out.append(pending)
            pending = None
        if piece.tokens < min_tokens:
            pending = piece
            continue
        out.append(piece)
    if pending is not None:
        if out and fits(out[-1], pending):
            out[-1] = _join(out[-1], pending, count_tokens)
        else:
            out.append(pending)
    return out
