#!/usr/bin/env bash
# The main job: set up (environment + offline model), ingest the demo corpus, create the demo accounts, and
# start the staff chat UI on this machine only (127.0.0.1).
#   ASSISTANT_UI_PORT     the port (default 8501)
#   ASSISTANT_UI_ADDRESS  the address to serve on (default 127.0.0.1); 0.0.0.0 opens it to the network
#   --demo-passwords      give the demo accounts the README's published passwords instead of random ones
set -euo pipefail
cd "$(dirname "$0")/.."
demo_flag=()
for arg in "$@"; do
  case "$arg" in
    --demo-passwords) demo_flag=(--demo-passwords) ;;
    *) echo "unknown option: $arg (the only option is --demo-passwords)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh --model
echo "== ingesting corpus/ (unchanged files are skipped on later runs)"
.venv/bin/ingest add corpus
.venv/bin/ingest stats
echo
echo "== demo accounts (user / password  role (department)); new passwords are printed only now"
.venv/bin/assistant users demo "${demo_flag[@]}"
port=${ASSISTANT_UI_PORT:-8501}
address=${ASSISTANT_UI_ADDRESS:-127.0.0.1}
echo
case "$address" in
  127.*|localhost|::1) ;;
  *) echo "WARNING: serving on $address: anyone who can reach this machine on port $port sees the login page."
     echo "         Put it behind HTTPS (a reverse proxy) and use strong passwords before opening it to a network." ;;
esac
echo "== the chat UI: open http://localhost:$port and log in with an account above (Ctrl-C stops it)"
echo "   admin sees the knowledge-base, adapters and users pages (and first sets its own password); the others chat."
exec .venv/bin/streamlit run ui/app.py --server.headless true --server.port "$port" --server.address "$address" \
  --browser.gatherUsageStats false
