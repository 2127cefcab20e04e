#!/usr/bin/env bash
# The main job: set up (environment + offline model), ingest the demo corpus, create the demo accounts, and
# start the staff chat UI. ASSISTANT_UI_PORT picks the port (default 8501).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --model
echo "== ingesting corpus/ (unchanged files are skipped on later runs)"
.venv/bin/ingest add corpus
.venv/bin/ingest stats
echo
echo "== demo accounts (user / password  role (department))"
.venv/bin/assistant users demo
port=${ASSISTANT_UI_PORT:-8501}
echo
echo "== the chat UI: open http://localhost:$port and log in with an account above (Ctrl-C stops it)"
echo "   admin sees the knowledge-base, adapters and users pages; the others chat."
exec .venv/bin/streamlit run ui/app.py --server.headless true --server.port "$port" \
  --browser.gatherUsageStats false
