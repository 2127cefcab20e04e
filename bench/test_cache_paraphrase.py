"""Tests of bench/cache_paraphrase.py: the labelled pairs' shape, and the threshold sweep on hand-made cosines
(no model is loaded).

    python -m pytest bench/test_cache_paraphrase.py -q
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_paraphrase as cp  # noqa: E402

from core.answer_cache import normalise  # noqa: E402


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return cp.load_pairs()


def test_pairs_have_the_fields_and_types(pairs):
    assert len(pairs) >= 200
    for p in pairs:
        assert set(p) == set(cp.FIELDS), p
        assert isinstance(p["a"], str) and p["a"].strip() and isinstance(p["b"], str) and p["b"].strip(), p
        assert isinstance(p["same"], bool), p
        assert p["lang"] in ("zh", "en"), p
        assert isinstance(p["domain"], str) and p["domain"], p


def test_pairs_cover_both_labels_languages_and_five_domains(pairs):
    labels = Counter(p["same"] for p in pairs)
    langs = Counter(p["lang"] for p in pairs)
    assert labels[True] >= 50 and labels[False] >= 50, labels
    assert min(langs["zh"], langs["en"]) >= 0.4 * len(pairs), langs  # about half each
    for lang in ("zh", "en"):
        assert {p["same"] for p in pairs if p["lang"] == lang} == {True, False}, lang
    assert len({p["domain"] for p in pairs}) >= 5


def test_pairs_are_distinct_and_never_equal_after_normalise(pairs):
    keys = Counter(frozenset((normalise(p["a"]), normalise(p["b"]))) for p in pairs)
    assert not [k for k, n in keys.items() if n > 1], "duplicate pairs"
    assert not [p for p in pairs if normalise(p["a"]) == normalise(p["b"])], "pair identical after normalise"


def test_language_label_matches_the_text(pairs):
    def has_han(s: str) -> bool:
        return any("\u4e00" <= ch <= "\u9fff" for ch in s)

    for p in pairs:
        assert has_han(p["a"] + p["b"]) == (p["lang"] == "zh"), p


def test_pairs_do_not_reuse_the_frozen_evaluation_questions(pairs):
    frozen = set()
    for f in (cp.ROOT / "bench" / "domains").glob("*/questions.jsonl"):
        frozen |= {normalise(json.loads(line)["question"]) for line in f.open(encoding="utf-8") if line.strip()}
    assert not [p for p in pairs if normalise(p["a"]) in frozen or normalise(p["b"]) in frozen]


COS = [0.95, 0.90, 0.85, 0.97, 0.88]
SAME = [True, True, True, False, False]


def test_rates_count_a_cosine_at_the_threshold_as_a_hit():
    r = cp.rates(COS, SAME, 0.90)
    assert (r["pos_hits"], r["n_pos"], r["neg_hits"], r["n_neg"]) == (2, 3, 1, 2)
    assert r["recall"] == pytest.approx(2 / 3) and r["false_hit"] == pytest.approx(0.5)


def test_sweep_covers_080_to_099_and_never_rises_with_the_threshold():
    assert cp.THRESHOLDS[0] == 0.80 and cp.THRESHOLDS[-1] == 0.99 and len(cp.THRESHOLDS) == 20
    rows = cp.sweep(COS, SAME)
    assert [r["threshold"] for r in rows] == cp.THRESHOLDS
    assert rows[0]["recall"] == 1.0 and rows[0]["false_hit"] == 1.0  # everything >= 0.80
    assert rows[-1]["recall"] == 0.0 and rows[-1]["false_hit"] == 0.0  # nothing >= 0.99
    for lo, hi in zip(rows, rows[1:], strict=False):
        assert hi["recall"] <= lo["recall"] and hi["false_hit"] <= lo["false_hit"]


def test_lowest_picks_the_first_threshold_within_the_false_hit_budget():
    rows = cp.sweep(COS, SAME)
    assert cp.lowest(rows, 0.0)["threshold"] == 0.98  # the near-miss at 0.97 is out only from 0.98
    assert cp.lowest(rows, 0.5)["threshold"] == 0.89  # the near-miss at 0.88 is out from 0.89
    assert cp.lowest(rows, 1.0)["threshold"] == 0.80
    assert cp.lowest(cp.sweep([0.9, 0.995], [True, False]), 0.01) is None  # a near-miss above every threshold


def test_ranking_and_analyse_on_hand_made_pairs():
    pairs = [{"a": "q1", "b": "p1", "same": True, "lang": "en", "domain": "x"},
             {"a": "q1", "b": "n1", "same": False, "lang": "en", "domain": "x"},
             {"a": "q2", "b": "p2", "same": True, "lang": "zh", "domain": "y"},
             {"a": "q2", "b": "n2", "same": False, "lang": "zh", "domain": "y"}]
    cos = np.array([0.96, 0.93, 0.91, 0.94])
    assert cp.ranking(pairs, cos) == {"anchors": 2, "separated": 1}
    res = cp.analyse(pairs, cos)
    assert set(res["sweep"]) == {"all", "en", "zh"}
    zero = res["recommended"]["zero_false"]
    assert zero["threshold"] == 0.95
    assert zero["all"]["recall"] == 0.5 and zero["en"]["recall"] == 1.0 and zero["zh"]["recall"] == 0.0
    assert zero["per_domain"]["x"]["false_hit"] == 0.0
    assert res["max_negative_cosine"] == pytest.approx(0.94)
    assert any("0.95" in line for line in cp.meaning(res, 2))


def test_exact_hits_count_what_normalise_already_joins():
    pairs = [{"a": "Ｗhat is the Grace Period？", "b": "what is the grace period", "same": True, "lang": "en",
              "domain": "x"},
             {"a": "grace period?", "b": "waiting period?", "same": False, "lang": "en", "domain": "x"}]
    ex = cp.exact_hits(pairs)
    assert ex["all"]["pos_hits"] == 1 and ex["all"]["recall"] == 1.0 and ex["all"]["false_hits"] == 0
