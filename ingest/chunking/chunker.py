"""Structure-aware chunking: pages -> sections (by heading) -> token-bounded chunks.

1. Lines are scanned for headings (see `headings.py`); each section keeps its heading path
   (e.g. "第三章 保险责任 > 第八条 意外身故保险金"). A page break also starts a new segment, so each chunk's
   page is exact for citations.
2. A section longer than `chunk_size` tokens (the embedding model's own tokens) is split with
   LangChain's RecursiveCharacterTextSplitter on paragraph, line and sentence boundaries, CJK
   punctuation (。！？；) included, with `chunk_overlap` tokens of overlap.
3. Fragments under `min_chunk_tokens` (a lone chapter title, a two-line clause) are merged with a
   neighbour when the result still fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.chunking.headings import Heading, detect_heading
from ingest.loaders.base import LoadedDocument

CHUNKER_VERSION = 1
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
        parts = [text] if n <= chunk_size else splitter.split_text(text)
        for part in parts:
            if part.strip():
                tokens = n if len(parts) == 1 else count_tokens(part)
                pieces.append(Chunk(part, seg.page, seg.page, clause, tokens, [clause] if clause else []))
    return _merge_small(pieces, count_tokens, chunk_size, min_chunk_tokens)


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
    pieces: list[Chunk], count_tokens: Callable[[str], int], chunk_size: int, min_tokens: int
) -> list[Chunk]:
    out: list[Chunk] = []
    pending: Chunk | None = None
    for piece in pieces:
        if pending is not None:
            if pending.tokens + piece.tokens + 1 <= chunk_size:
                piece = _join(pending, piece, count_tokens)
            else:
                out.append(pending)
            pending = None
        if piece.tokens < min_tokens:
            pending = piece
            continue
        out.append(piece)
    if pending is not None:
        if out and out[-1].tokens + pending.tokens + 1 <= chunk_size:
            out[-1] = _join(out[-1], pending, count_tokens)
        else:
            out.append(pending)
    return out
