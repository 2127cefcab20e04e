"""Retrieval evaluation, the gate for any retrieval change: recall@1/5/10 and MRR@10 of each leg of the chain's
own `HybridRetriever` (dense alone, BM25 alone) and of its fusions, on every set at hand, same knowledge base.

Sets (each its own knowledge base, built through `ingest` and cached under --cache, keyed by the files and
the ingest code, so a chunking change rebuilds it):
- financebench: the dev filings (../shared/data/financebench), page-level: a hit is a passage of the
  question's filing whose pages include an evidence page. --fb-docs N takes the N smallest filings.
- rgb-zh / rgb-en: RGB zh_refine and en_fact, every question's positive and negative passages pooled, one
  file per passage; a hit is a positive passage. --rgb-limit N takes the first N questions (and their pool).
- corpus: questions over the demo corpus (corpus/), zh and en; a hit is the named file's passage that
  holds the answer's words (bench/data/corpus_questions.jsonl).
- domain-zh: Chinese questions over the corpus's Chinese documents, with RGB zh news passages as
  distractors (bench/data/domain_zh_questions.jsonl).
Rankings count units once (a PDF page, else a chunk), as the chain shows them; ms/q excludes the query
embedding (shared by the modes).

--store both: the same knowledge base also in Milvus Lite (copied from the FAISS one by `ingest migrate`'s code:
the same chunks and vectors), once per BM25 variant of --milvus-bm25 ("tokens": the project's jieba/English
tokens scored by Milvus's BM25; "jieba": Milvus's own jieba analyzer on the text), printed side by side.

    .venv/bin/python bench/retrieval_eval.py [--sets financebench,rgb-zh,...] [--fb-docs 5] [--rgb-limit 100]
        [--modes dense,bm25,rrf-chunks,rrf,weighted,calibrated-unnamed,calibrated] [--cache .cache/bench]
        [--store faiss|milvus|both] [--milvus-bm25 tokens,jieba]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, parser, print_table, shared_dir

DATA = Path(__file__).resolve().parent / "data"
# what decides a knowledge base's content: parsing, chunking, the embedded text, the settings' defaults
INGEST_CODE = ["ingest/loaders", "ingest/chunking", "ingest/embeddings.py", "core/settings.py",
               "ingest/parse_worker.py"]


def _code_hash() -> str:
    import inspect

    from ingest import pipeline

    h = hashlib.sha1(inspect.getsource(pipeline.embedding_text).encode())
    for part in INGEST_CODE:
        p = ROOT / part
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.read_bytes())
    return h.hexdigest()[:10]


def _kb(cache: Path, name: str, files: list[Path], model: str) -> Any:
    """Settings of a cached knowledge base holding `files` (built when missing)."""
    from core.settings import Settings
    from ingest import pipeline
    from ingest.store import KnowledgeBase

    key = hashlib.sha1("\n".join([_code_hash(), model, *map(str, files)]).encode()).hexdigest()[:12]
    settings = Settings(home=cache / f"{name}-{key}", embedding_model=model)
    if not KnowledgeBase(settings).exists():
        t0 = time.perf_counter()
        report = pipeline.add_paths(settings, files)
        bad = [(r.path.name, r.reason) for r in report.failed]
        print(f"  built {name}: {report.pages} pages, {report.chunks} chunks in {time.perf_counter() - t0:.0f} s"
              + (f"; failed {bad}" if bad else ""))
    return settings


def _passage_files(cache: Path, name: str, texts: list[str]) -> list[Path]:
    folder = cache / f"{name}-passages"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, text in enumerate(texts):
        f = folder / f"{i:05d}.txt"
        if not f.exists() or f.read_text(encoding="utf-8") != text:
            f.write_text(text, encoding="utf-8")
        files.append(f)
    return files


# A case: (query, is_hit(passage) -> bool)
Case = tuple[str, Callable[[Any], bool]]


def financebench(args, cache: Path) -> tuple[Any, list[Case]]:
    data = shared_dir(args.shared) / "financebench"
    pdfs = sorted((data / "pdfs").glob("*.pdf"), key=lambda f: f.stat().st_size)
    if args.fb_docs:
        pdfs = pdfs[: args.fb_docs]
    names = {f.stem for f in pdfs}
    rows = [q for q in map(json.loads, (data / "questions.jsonl").read_text().splitlines()) if q["doc_name"] in names]
    settings = _kb(cache, f"financebench{len(pdfs)}", pdfs, args.embedding_model)

    def case(q: dict) -> Case:
        pages = {e["evidence_page_num"] for e in q["evidence"]}

        def hit(p: Any) -> bool:
            md = p.hit.metadata
            first = md.get("page")
            last = md.get("page_end") if md.get("page_end") is not None else first
            return Path(p.hit.source).stem == q["doc_name"] and first is not None and any(
                first <= e <= last for e in pages)

        return q["question"], hit

    return settings, [case(q) for q in rows]


def rgb(args, cache: Path, lang: str) -> tuple[Any, list[Case]]:
    fname = {"zh": "zh_refine.jsonl", "en": "en_fact.jsonl"}[lang]
    rows = [json.loads(line) for line in (shared_dir(args.shared) / "rgb" / fname).read_text().splitlines()]
    if args.rgb_limit:
        rows = rows[: args.rgb_limit]
    pool: dict[str, int] = {}
    for r in rows:
        for text in r["positive"] + r["negative"]:
            pool.setdefault(text, len(pool))
    files = _passage_files(cache, f"rgb-{lang}", list(pool))
    settings = _kb(cache, f"rgb-{lang}{len(rows)}", files, args.embedding_model)

    def case(r: dict) -> Case:
        positives = {files[pool[t]].name for t in r["positive"]}
        return r["query"], lambda p: p.hit.source in positives

    return settings, [case(r) for r in rows]


def _evidence_cases(rows: list[dict]) -> list[Case]:
    def case(r: dict) -> Case:
        targets = [(t["source"], t["evidence"]) for t in r["targets"]]
        return r["question"], lambda p: any(p.hit.source == s and "".join(e.split()) in "".join(p.hit.text.split())
                                            for s, e in targets)

    return [case(r) for r in rows]


def corpus(args, cache: Path) -> tuple[Any, list[Case]]:
    rows = [json.loads(line) for line in (DATA / "corpus_questions.jsonl").read_text().splitlines()]
    settings = _kb(cache, "corpus", sorted((ROOT / "corpus").iterdir()), args.embedding_model)
    return settings, _evidence_cases(rows)


def domain_zh(args, cache: Path) -> tuple[Any, list[Case]]:
    rows = [json.loads(line) for line in (DATA / "domain_zh_questions.jsonl").read_text().splitlines()]
    news = [json.loads(line) for line in (shared_dir(args.shared) / "rgb" / "zh_refine.jsonl").read_text().splitlines()]
    distractors = list(dict.fromkeys(t for r in news[-150:] for t in r["negative"]))[:400]
    files = [p for p in sorted((ROOT / "corpus").iterdir()) if any("\u4e00" <= c <= "\u9fff" for c in p.name)]
    files += _passage_files(cache, "domain-zh-news", distractors)
    settings = _kb(cache, "domain-zh", files, args.embedding_model)
    return settings, _evidence_cases(rows)


SETS = {"financebench": financebench, "rgb-zh": lambda a, c: rgb(a, c, "zh"), "rgb-en": lambda a, c: rgb(a, c, "en"),
        "corpus": corpus, "domain-zh": domain_zh}


def evaluate(settings: Any, cases: list[Case], modes: list[str]) -> list[dict[str, Any]]:
    """Each mode on the same retriever (the query is embedded once and shared by the modes)."""
    from assistant.chain.retrieval import HybridRetriever

    retriever = HybridRetriever(settings)
    stats = {m: {"mode": m, "R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "MRR": 0.0, "ms/q": 0.0} for m in modes}
    for query, is_hit in cases:
        retriever._embed(query)
        for mode in modes:
            # "rrf-chunks": the default of earlier releases (RRF, chunk-level: a page may fill several slots)
            # "calibrated-unnamed": calibrated fusion without the named-document step (the default before it)
            retriever.fusion = mode.removesuffix("-chunks").removesuffix("-unnamed")
            retriever.one_per_page = not mode.endswith("-chunks")
            retriever.named_documents = not mode.endswith("-unnamed")
            t0 = time.perf_counter()
            passages = retriever.retrieve(query, k=10).passages
            st = stats[mode]
            st["ms/q"] += (time.perf_counter() - t0) * 1000
            for rank, p in enumerate(passages, start=1):
                if is_hit(p):
                    st["R@1"] += rank == 1
                    st["R@5"] += rank <= 5
                    st["R@10"] += 1
                    st["MRR"] += 1 / rank
                    break
    n = max(len(cases), 1)
    return [{k: (round(v / n, 3) if k != "mode" else v) for k, v in st.items()} for st in stats.values()]


def milvus_copy(settings: Any, analyzer: str) -> Any:
    """The FAISS knowledge base of `settings` copied into a fresh Milvus Lite file (vectors reused)."""
    from ingest import lexical, milvus_store
    from ingest.store import KnowledgeBase, Snapshot

    db = settings.home / f"milvus-{analyzer}.db"
    shutil.rmtree(db, ignore_errors=True)  # a fresh copy each run: the comparison is of this code, on these vectors
    target = settings.model_copy(update={"vector_store": "milvus", "milvus_uri": str(db)})
    snapshot = KnowledgeBase(settings).load()
    t0 = time.perf_counter()
    kb = KnowledgeBase(target)
    with kb.acquire():
        kb.commit(Snapshot(manifest=snapshot.manifest, store=snapshot.store), analyzer=analyzer,
                  tokens=lexical.load_terms(KnowledgeBase(settings).version_dir()))
    print(f"  copied into Milvus Lite ({analyzer} BM25): {len(snapshot.store or [])} chunks in "
          f"{time.perf_counter() - t0:.1f} s")
    assert isinstance(kb, milvus_store.MilvusKnowledgeBase)
    return target


def compare_stores(args, cache: Path) -> None:
    """recall@5 per mode: FAISS beside each Milvus BM25 variant, with the difference to FAISS."""
    modes = args.modes.split(",")
    analyzers = args.milvus_bm25.split(",")
    cols = ["set", "n", "mode", "faiss", *(c for a in analyzers for c in (f"milvus-{a}", f"Δ milvus-{a}")),
            "ms/q faiss", "ms/q milvus"]
    table: list[dict[str, Any]] = []
    for name in args.sets.split(","):
        settings, cases = SETS[name](args, cache)
        stores = {"faiss": evaluate(settings, cases, modes)}
        for analyzer in analyzers:
            stores[f"milvus-{analyzer}"] = evaluate(milvus_copy(settings, analyzer), cases, modes)
        for i, mode in enumerate(modes):
            row = {"set": name, "n": len(cases), "mode": mode}
            for store, rows in stores.items():
                row[store] = rows[i]["R@5"]
                if store != "faiss":
                    row[f"Δ {store}"] = round(rows[i]["R@5"] - stores["faiss"][i]["R@5"], 3)
            row["ms/q faiss"] = stores["faiss"][i]["ms/q"]
            row["ms/q milvus"] = stores[f"milvus-{analyzers[0]}"][i]["ms/q"]
            table.append(row)
        print_table(f"{name}: recall@5, FAISS vs Milvus", [r for r in table if r["set"] == name], cols)
    print_table("recall@5, FAISS vs Milvus (same chunks and vectors)", table, cols)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--store", choices=["faiss", "milvus", "both"], default="faiss")
    p.add_argument("--milvus-bm25", default="tokens,jieba", help="Milvus BM25 variants to compare (--store both)")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--modes", default="dense,bm25,rrf-chunks,rrf,weighted,calibrated-unnamed,calibrated")
    p.add_argument("--fb-docs", type=int, default=0, help="only the N smallest filings (0 = all 10)")
    p.add_argument("--rgb-limit", type=int, default=100, help="first N questions of each RGB set (0 = all)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "bench"), help="where built knowledge bases are kept")
    args = p.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.store == "both":
        compare_stores(args, cache)
        return
    summary = []
    for name in args.sets.split(","):
        settings, cases = SETS[name](args, cache)
        if args.store == "milvus":
            settings = milvus_copy(settings, args.milvus_bm25.split(",")[0])
        rows = evaluate(settings, cases, args.modes.split(","))
        print_table(f"{name}: {len(cases)} questions", rows, ["mode", "R@1", "R@5", "R@10", "MRR", "ms/q"])
        best_leg = max((r for r in rows if r["mode"] in ("dense", "bm25")), key=lambda r: r["R@5"], default=None)
        summary.append({"set": name, "n": len(cases), **{r["mode"]: r["R@5"] for r in rows},
                        "best leg": best_leg["mode"] if best_leg else ""})
    modes = args.modes.split(",")
    print_table("recall@5 by set", summary, ["set", "n", *modes, "best leg"])


if __name__ == "__main__":
    main()
