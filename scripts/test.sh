#!/usr/bin/env bash
# Set up everything the tests need (Python env with dev extras, fonts for generated PDFs), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests generate real Chinese PDFs (a Latin and a CJK TrueType font) and drive the UI in a real browser
# (Debian's chromium, through playwright): Debian packages, installed beside the Python setup.
need=()
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || need+=(fonts-droid-fallback)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
# OCR of scans (the default engine) with its Chinese model, and the libraries RapidOCR's OpenCV loads (as setup.sh)
command -v tesseract >/dev/null || need+=(tesseract-ocr)
[ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/chi_sim.traineddata 2>/dev/null)" ] || need+=(tesseract-ocr-chi-sim)
ldconfig -p 2>/dev/null | grep -q "libGL.so.1" || need+=(libgl1 libglib2.0-0)
# App state on PostgreSQL is tested on a throwaway server the tests start (initdb + pg_ctl, tests/postgres.py)
command -v initdb >/dev/null || [ -n "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" ] || need+=(postgresql)
apt_pid=""
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
  if command -v apt-get >/dev/null; then
    echo "== installing ${need[*]} (apt, beside the Python setup)"
    apt_log=$(mktemp)
    # setup.sh's own apt-get waits for this one's lock and then finds its packages installed
    { $sudo_cmd apt-get update -qq || true
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}"
    } >"$apt_log" 2>&1 &
    apt_pid=$!
  else
    echo "warning: install ${need[*]} (or their equivalents) for the PDF and browser tests" >&2
  fi
fi

bash scripts/setup.sh --dev
if [ -n "$apt_pid" ]; then
  if ! wait "$apt_pid"; then
    tail -20 "$apt_log" >&2
    echo "error: apt-get could not install ${need[*]}; install them and run this again" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

# The real Qwen3 tokenizer and chat template, for the tiny Qwen3 the model tests build.
bash scripts/fetch_qwen3_tokenizer.sh .cache/qwen3-tokenizer

echo "== ruff"
.venv/bin/ruff check .
# one worker per core (at most 4: each holds its own models), a test module per worker at a time (module fixtures built
# once), the longest modules first (tests/conftest.py); TEST_WORKERS=0 runs in this process
workers=${TEST_WORKERS:-$(n=$(nproc); echo $(( n < 4 ? n : 4 )))}
echo "== pytest ($workers workers)"
.venv/bin/pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
if [ $# -eq 0 ]; then
  # past one machine: the store and access tests again with app state in PostgreSQL (a throwaway server) and knowledge
  # bases in Milvus Lite: users, audit, training gate, logins, retrieval and fusion, knowledge bases and every access
  # path (filters inside Milvus's searches); test_postgres_state.py and test_milvus_store.py ran on them above. The
  # whole suite passes that way too (README); both whole runs take longer than CI allows on 2 cores.
  echo "== pytest: app state on PostgreSQL, knowledge bases on Milvus Lite"
  ASSISTANT_TEST_POSTGRES=1 ASSISTANT_VECTOR_STORE=milvus .venv/bin/pytest -q -n "$workers" --dist loadfile \
    --no-loadscope-reorder \
    tests/test_users.py \
    tests/test_audit_chain.py tests/test_cli_audit.py tests/test_training_gate.py tests/test_login_hardening.py \
    tests/test_retrieval.py tests/test_knowledge_base.py tests/test_fusion.py tests/test_access_paths.py
fi
# each of issue 29's attacks is a test above (tests/test_hostile_pages.py, test_training_gate.py,
# test_login_hardening.py, test_audit_chain.py); bench/security_check.py reports all attacks end to end, by hand
