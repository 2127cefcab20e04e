#!/usr/bin/env bash
# Set up everything the tests need (Python env with dev extras, fonts for generated PDFs), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev

# Tests generate real Chinese PDFs: they need a Latin and a CJK TrueType font (Debian packages).
if [ ! -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
  if command -v apt-get >/dev/null; then
    echo "== installing fonts for test PDFs (fonts-droid-fallback, fonts-dejavu-core)"
    $sudo_cmd apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq fonts-droid-fallback fonts-dejavu-core >/dev/null
  else
    echo "warning: install a CJK TrueType font (e.g. Droid Sans Fallback) and DejaVu Sans for the PDF tests" >&2
  fi
fi

# The real Qwen3 tokenizer and chat template, for the tiny Qwen3 the model tests build.
bash scripts/fetch_qwen3_tokenizer.sh .cache/qwen3-tokenizer

echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
.venv/bin/pytest -q "$@"
