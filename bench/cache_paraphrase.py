"""Calibrate the answer cache's paraphrase matching (`settings.cache_semantic`): at which cosine between two questions'
embeddings may the cache serve one question's answer to the other?

    cd bench && PYTHONPATH=.. ../.venv/bin/python cache_paraphrase.py [--embedding-model NAME] [--json OUT]

Data: bench/data/cache_pairs.jsonl, hand-written question pairs (zh and en, several domains) labelled `same`: true
for a paraphrase (same information need, other words, word order, formality, typos), false for a HARD near-miss
(near-identical wording that asks something else: another figure or tier, product, party, attribute, negation,
year or level). A paraphrase at or above the threshold is a saved answer; a near-miss at or above it is the answer
of a different question served as if it were this one, which is far worse than a miss.

Embeddings: the product's own, loaded as the product loads them (`ingest.embeddings.load_embeddings` with the
default `core.settings.Settings().embedding_model`, or `--embedding-model`), each question embedded with
`embed_query` as `HybridRetriever.query_vector` does for the cache (e5: the "query: " prefix), the raw question as
asked. Printed: per threshold 0.80..0.99 the paraphrase hit rate (recall on the positives) and the false-hit rate
(share of negatives at or above), per language and overall; the lowest threshold with no false hit here and the
lowest with at most 1%; the same for the questions after `core.answer_cache.normalise`, and how many paraphrases
the exact (normalised) key alone already catches. Stdlib and numpy besides the project's embedding code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "data" / "cache_pairs.jsonl"
THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(20)]  # 0.80 .. 0.99
FIELDS = ("a", "b", "same", "lang", "domain")


def load_pairs(path: Path = DATA) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            missing = [f for f in FIELDS if f not in row]
            if missing:
                raise ValueError(f"{path.name}:{n}: missing {missing}")
            rows.append(row)
    return rows


def rates(cos: Sequence[float], same: Sequence[bool], t: float) -> dict[str, Any]:
    """Paraphrase hit rate and false-hit rate at threshold `t` (a hit: cosine >= t)."""
    c, s = np.asarray(cos, dtype=np.float64), np.asarray(same, dtype=bool)
    pos_hits, neg_hits = int(np.sum(c[s] >= t)), int(np.sum(c[~s] >= t))
    n_pos, n_neg = int(s.sum()), int((~s).sum())
    return {"threshold": t, "recall": pos_hits / n_pos if n_pos else None,
            "false_hit": neg_hits / n_neg if n_neg else None,
            "pos_hits": pos_hits, "neg_hits": neg_hits, "n_pos": n_pos, "n_neg": n_neg}


def sweep(cos: Sequence[float], same: Sequence[bool], thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """`rates` at every threshold, in the given order."""
    return [rates(cos, same, t) for t in thresholds]


def lowest(rows: list[dict[str, Any]], max_false: float) -> dict[str, Any] | None:
    """The row of the lowest threshold whose false-hit rate is at most `max_false` (None: no threshold is)."""
    ok = [r for r in rows if r["false_hit"] is not None and r["false_hit"] <= max_false + 1e-12]
    return min(ok, key=lambda r: r["threshold"]) if ok else None


def ranking(pairs: list[dict[str, Any]], cos: Sequence[float]) -> dict[str, int]:
    """Anchors (a question `a` with both a paraphrase and a near-miss in the set): how often every paraphrase of it
    scores above every near-miss, i.e. some threshold would separate them for this question."""
    by_anchor: dict[str, dict[bool, list[float]]] = {}
    for p, c in zip(pairs, cos, strict=True):
        by_anchor.setdefault(p["a"], {True: [], False: []})[bool(p["same"])].append(float(c))
    both = [v for v in by_anchor.values() if v[True] and v[False]]
    return {"anchors": len(both), "separated": sum(min(v[True]) > max(v[False]) for v in both)}


def analyse(pairs: list[dict[str, Any]], cos: np.ndarray) -> dict[str, Any]:
    same = [bool(p["same"]) for p in pairs]
    out: dict[str, Any] = {"sweep": {}, "recommended": {}}
    groups = {"all": list(range(len(pairs)))}
    for lang in sorted({p["lang"] for p in pairs}):
        groups[lang] = [i for i, p in enumerate(pairs) if p["lang"] == lang]
    for name, idx in groups.items():
        out["sweep"][name] = sweep(cos[idx], [same[i] for i in idx])
    for label, max_false in (("zero_false", 0.0), ("false_le_1pct", 0.01)):
        pick = lowest(out["sweep"]["all"], max_false)
        t = pick["threshold"] if pick else None
        out["recommended"][label] = {
            "threshold": t,
            **{name: (rates(cos[idx], [same[i] for i in idx], t) if t is not None else None)
               for name, idx in groups.items()},
            "per_domain": {d: rates(cos[ix], [same[i] for i in ix], t) for d in sorted({p["domain"] for p in pairs})
                           if (ix := [i for i, p in enumerate(pairs) if p["domain"] == d])} if t is not None else None,
        }
    neg = cos[~np.asarray(same)]
    pos = cos[np.asarray(same)]
    top = float(neg.max()) if len(neg) else None
    out["max_negative_cosine"] = top
    out["recall_above_max_negative"] = float(np.mean(pos > top)) if top is not None and len(pos) else None
    out["positive_cosine"] = _quantiles(pos)
    out["negative_cosine"] = _quantiles(neg)
    out["ranking"] = ranking(pairs, cos)
    return out


def _quantiles(x: np.ndarray) -> dict[str, float] | None:
    if not len(x):
        return None
    q = np.quantile(x, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {k: round(float(v), 4) for k, v in zip(("min", "p10", "median", "p90", "max"), q, strict=True)}


def exact_hits(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the exact cache key (the normalised question) alone matches: share of paraphrases it catches, and
    near-misses it would wrongly join (must be none)."""
    from core.answer_cache import normalise

    out: dict[str, Any] = {}
    for name in ["all"] + sorted({p["lang"] for p in pairs}):
        sel = [p for p in pairs if name == "all" or p["lang"] == name]
        pos = [p for p in sel if p["same"]]
        neg = [p for p in sel if not p["same"]]
        hit = [normalise(p["a"]) == normalise(p["b"]) for p in pos]
        wrong = [normalise(p["a"]) == normalise(p["b"]) for p in neg]
        out[name] = {"recall": sum(hit) / len(pos) if pos else None, "pos_hits": sum(hit), "n_pos": len(pos),
                     "false_hits": sum(wrong), "n_neg": len(neg)}
    return out


def embed_all(model: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """Unit vectors of the distinct texts, each embedded as the product embeds a question (embed_query)."""
    out = {}
    for t in dict.fromkeys(texts):
        v = np.asarray(model.embed_query(t), dtype=np.float64)
        out[t] = v / (np.linalg.norm(v) or 1.0)
    return out


def cosines(pairs: list[dict[str, Any]], vecs: dict[str, np.ndarray], form: Any = None) -> np.ndarray:
    f = form or (lambda s: s)
    return np.array([float(vecs[f(p["a"])] @ vecs[f(p["b"])]) for p in pairs])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def print_sweep(title: str, result: dict[str, Any]) -> None:
    groups = list(result["sweep"])
    print(f"\n{title}")
    print("thresh  " + "  ".join(f"{g + ' recall':>11} {g + ' false':>10}" for g in groups))
    for i, t in enumerate(THRESHOLDS):
        cells = []
        for g in groups:
            r = result["sweep"][g][i]
            cells.append(f"{_pct(r['recall']):>11} {_pct(r['false_hit']):>10}")
        print(f"{t:.2f}    " + "  ".join(cells))
    for label, text in (("zero_false", "no false hit"), ("false_le_1pct", "false hits <= 1%")):
        rec = result["recommended"][label]
        if rec["threshold"] is None:
            print(f"lowest threshold with {text}: none in 0.80..0.99")
            continue
        parts = [f"{g}: recall {_pct(rec[g]['recall'])} ({rec[g]['pos_hits']}/{rec[g]['n_pos']}), false "
                 f"{_pct(rec[g]['false_hit'])} ({rec[g]['neg_hits']}/{rec[g]['n_neg']})" for g in groups]
        print(f"lowest threshold with {text}: {rec['threshold']:.2f} -> " + "; ".join(parts))
    print(f"highest near-miss cosine {result['max_negative_cosine']:.4f}; paraphrases above it: "
          f"{_pct(result['recall_above_max_negative'])}; anchors whose paraphrase outscores their near-miss: "
          f"{result['ranking']['separated']}/{result['ranking']['anchors']}")
    print(f"cosine quantiles  paraphrases {result['positive_cosine']}  near-misses {result['negative_cosine']}")


def meaning(result: dict[str, Any], n_neg: int) -> list[str]:
    """The sweep in words: which setting of `cache_semantic` this set supports, and what it costs."""
    zero, one = result["recommended"]["zero_false"], result["recommended"]["false_le_1pct"]
    langs = [g for g in result["sweep"] if g != "all"]
    lines = []
    if zero["threshold"] is None:
        top = result["sweep"]["all"][-1]
        lines.append(
            f"No threshold in {THRESHOLDS[0]:.2f}..{THRESHOLDS[-1]:.2f} keeps every near-miss out (the closest scores "
            f"{result['max_negative_cosine']:.4f}; at {top['threshold']:.2f} {_pct(top['false_hit']).strip()} of "
            f"near-misses still hit while {_pct(top['recall']).strip()} of paraphrases do): cosine on this embedding "
            "does not tell a paraphrase from a different question worded alike. Leave cache_semantic off (None).")
    else:
        by_lang = ", ".join(f"{g} {_pct(zero[g]['recall']).strip()}" for g in langs)
        lines.append(
            f"cache_semantic = {zero['threshold']:.2f} is the lowest setting with no wrong hit on these {n_neg} "
            f"near-misses; it serves {_pct(zero['all']['recall']).strip()} of paraphrases ({by_lang}).")
        lines.append(
            f"0 wrong hits in {n_neg} bounds the true rate only to <= {100 * 3 / n_neg:.1f}% (95%, rule of three) for "
            "near-misses like these; one wrong hit serves another question's answer.")
        if not zero["all"]["pos_hits"]:
            lines.append("That setting serves no paraphrase at all: paraphrase matching buys nothing here; leave "
                         "cache_semantic off (None).")
    if one["threshold"] is not None and one["threshold"] != zero["threshold"]:
        lines.append(f"Accepting <= 1% wrong hits: {one['threshold']:.2f}, serving "
                     f"{_pct(one['all']['recall']).strip()} of paraphrases.")
    rank = result["ranking"]
    lines.append(f"Even per question the order is unreliable: for {rank['anchors'] - rank['separated']} of "
                 f"{rank['anchors']} questions with both kinds in the set, a near-miss scores at least as high as a "
                 "paraphrase.")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedding-model", help="embedding model spec (default: Settings().embedding_model)")
    p.add_argument("--data", default=str(DATA), help="labelled pairs (JSONL)")
    p.add_argument("--json", dest="json_out", help="write all figures here")
    args = p.parse_args()

    from core.answer_cache import normalise
    from core.settings import Settings
    from ingest.embeddings import load_embeddings

    spec = args.embedding_model or Settings().embedding_model
    pairs = load_pairs(Path(args.data))
    n_pos = sum(bool(p["same"]) for p in pairs)
    n_neg = len(pairs) - n_pos
    t0 = time.perf_counter()
    model = load_embeddings(spec)
    load_s = time.perf_counter() - t0
    raw_texts = [t for p in pairs for t in (p["a"], p["b"])]
    norm_texts = [normalise(t) for t in raw_texts]
    t0 = time.perf_counter()
    vecs = embed_all(model, raw_texts + norm_texts)
    embed_s = time.perf_counter() - t0
    cos_raw = cosines(pairs, vecs)
    cos_norm = cosines(pairs, vecs, normalise)

    langs = {lang: sum(p["lang"] == lang for p in pairs) for lang in sorted({p["lang"] for p in pairs})}
    print(f"model {getattr(model, 'name', spec)} (loaded in {load_s:.1f}s); {len(pairs)} pairs: {n_pos} paraphrases, "
          f"{n_neg} near-misses; {langs}; {len({p['domain'] for p in pairs})} domains; "
          f"{len(vecs)} distinct texts embedded in {embed_s:.1f}s")

    raw = analyse(pairs, cos_raw)
    norm = analyse(pairs, cos_norm)
    exact = exact_hits(pairs)
    print_sweep("Questions as asked (what the product embeds)", raw)
    print_sweep("Questions after core.answer_cache.normalise", norm)
    print("\nExact cache key alone (normalised question): paraphrases caught "
          + "; ".join(f"{k} {_pct(v['recall']).strip()} ({v['pos_hits']}/{v['n_pos']})" for k, v in exact.items())
          + f"; near-misses joined: {exact['all']['false_hits']}")

    order = np.argsort(-cos_raw)
    print("\nClosest near-misses (as asked):")
    for i in [i for i in order if not pairs[i]["same"]][:8]:
        print(f"  {cos_raw[i]:.4f}  {pairs[i]['a']}  |  {pairs[i]['b']}")
    print("Farthest paraphrases (as asked):")
    for i in [i for i in order[::-1] if pairs[i]["same"]][:5]:
        print(f"  {cos_raw[i]:.4f}  {pairs[i]['a']}  |  {pairs[i]['b']}")

    print("\nWhat it means:")
    for line in meaning(raw, n_neg):
        print("  " + line)

    if args.json_out:
        out = {"model": getattr(model, "name", spec), "data": str(args.data), "pairs": len(pairs), "positives": n_pos,
               "negatives": n_neg, "languages": langs, "thresholds": THRESHOLDS, "load_s": round(load_s, 2),
               "embed_s": round(embed_s, 2), "as_asked": raw, "normalised": norm, "exact_key": exact,
               "meaning": meaning(raw, n_neg),
               "per_pair": [{**p, "cos": round(float(c), 5), "cos_normalised": round(float(cn), 5)}
                            for p, c, cn in zip(pairs, cos_raw, cos_norm, strict=True)]}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
