#!/usr/bin/env bash
# The main job: set up, ingest the demo corpus into the default knowledge base, show a search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --model
echo "== ingesting corpus/ (unchanged files are skipped on later runs)"
.venv/bin/ingest add corpus
.venv/bin/ingest stats
for q in "意外身故保险金怎么申请？" "Who must approve a claim above CNY 300,000?"; do
  echo
  echo "== ingest search \"$q\""
  .venv/bin/ingest search "$q" --k 3
done
