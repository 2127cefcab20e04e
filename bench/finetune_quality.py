"""Adapted vs base model on the adapter's own held-out split of the domain set, in one run.

    .venv/bin/python bench/finetune_quality.py --adapter claims [--limit 24] [--max-new-tokens 64]

The held-out split is rebuilt from the adapter's recipe (eval_ratio, seed) and its training files,
whose sha256 must match what the adapter recorded. Reports loss, token accuracy and answer-level
metrics (F1, exact match, tool-call, citation and refusal accuracy) for both, and writes every
generated answer to bench/results/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import ROOT, parser, print_table


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--adapter", default="claims", help="NAME or NAME@vN in the registry")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=64)
    a = p.parse_args()

    from core import registry
    from core.models import load_model
    from core.settings import load_settings
    from finetune.data import load_dataset
    from finetune.evaluate import answer_metrics
    from finetune.recipe import Recipe
    from finetune.render import render
    from finetune.trainer import evaluate_examples, pad_id_of, split_conversations

    settings = load_settings()
    av = registry.get(settings, a.adapter)
    recipe = Recipe(**av.meta["recipe"])
    datasets = []
    for d in av.meta["data"]:
        ds = load_dataset(Path(d["path"]), recipe.enable_thinking)
        if ds.sha256 != d["sha256"]:
            raise SystemExit(f"{d['path']} changed since {av.ref} was trained; its held-out split is gone")
        datasets.append(ds)
    _, held = split_conversations(datasets, recipe.eval_ratio, recipe.seed)
    held = held[: a.limit]
    lm = load_model(av.meta["base"], settings)
    examples = [e for e in (render(lm.tokenizer, c, recipe.max_length) for c in held) if e.n_labels]

    rows, outputs = [], {}
    for label in ("base", "adapted"):
        if label == "adapted":
            lm.model = registry.apply_adapter(lm, av)
        t0 = time.perf_counter()
        m = evaluate_examples(lm.model, examples, 2, pad_id_of(lm.tokenizer), lm.device)
        m.update(answer_metrics(lm.model, lm.tokenizer, held, a.max_new_tokens))
        outputs[label] = m.pop("rows")
        rows.append({"model": f"{label} ({av.ref if label == 'adapted' else av.meta['base']})",
                     **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()},
                     "wall_s": round(time.perf_counter() - t0, 1)})
    cols = ["model", "eval_loss", "eval_token_acc", "answer_f1", "exact_match", "tool_call_acc", "citation_acc",
            "refusal_acc", "n", "wall_s"]
    print_table(f"{av.ref} vs its base on {len(held)} held-out examples of the domain set", rows, cols)
    out = ROOT / "bench" / "results" / f"finetune_quality_{av.name}_{av.version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": rows, "outputs": outputs}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nanswers written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
