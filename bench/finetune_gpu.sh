#!/usr/bin/env bash
# Issue 14's GPU figures in one run: ours vs the HF Trainer recipe at Qwen3-1.7B/8B/14B shapes (random bf16
# weights, each trainer in its own process), and QLoRA 14B under a 24 GB cap.
#   bash bench/finetune_gpu.sh OUT_DIR [SHAPES...]      (from the repo root, on one CUDA GPU)
# SHAPES default to the issue's; `tiny` checks the script end to end on a CPU.
set -u
out=${1:-/tmp/finetune_gpu}
shift || true
shapes=${*:-qwen3-1.7b qwen3-8b qwen3-14b}
mkdir -p "$out"
log="$out/log.txt"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  date
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $py -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
  $py -c "import bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)" 2>&1 | tail -1
} >>"$log" 2>&1

run() {  # name, timeout, bench arguments...
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee -a "$log"
  timeout "$limit" $py bench/finetune_throughput.py "$@" --out "$out/$name.json" >>"$log" 2>&1
  echo "   exit $?" | tee -a "$log"
}

for s in $shapes; do
  case $s in
    qwen3-14b) continue ;;  # last: the largest, so a slow start still leaves the others' figures
    tiny) run "$s" 900 --shape "$s" --steps 4 --max-length 256 ;;
    *) run "$s" 170 --shape "$s" --steps 16 ;;
  esac
done
if [[ -n "${SKIP_QLORA:-}" ]]; then
  :
elif [[ " $shapes " == *" tiny "* ]]; then
  run tiny-qlora 300 --shape tiny --steps 2 --max-length 256 --qlora --which ours  # no CUDA: fails cleanly
else
  run qwen3-14b-qlora 150 --shape qwen3-14b --steps 16 --qlora --which ours
fi
if [[ " $shapes " == *" qwen3-14b "* ]]; then
  run qwen3-14b 240 --shape qwen3-14b --steps 16
  run qwen3-14b-ckpt 150 --shape qwen3-14b --steps 16 --checkpointing on --which ours
fi

$py - "$out" <<'EOF' | tee "$out/summary.txt"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"{'run':<18} {'trainer':<50} {'tok/s':>9} {'peak GB':>8} {'ckpt':>5}  ratios / error")
for f in sorted(out.glob("*.json")):
    s = json.loads(f.read_text())
    for r in s["rows"]:
        extra = r.get("error", "")
        print(f"{f.stem:<18} {r['trainer'][:50]:<50} {r.get('tok_per_s', '-'):>9} {str(r.get('cuda_peak_gb', '-')):>8} "
              f"{str(r.get('checkpointing', '')):>5}  {extra[:60]}")
    if "throughput_ratio" in s:
        print(f"{f.stem:<18} ours/recipe: throughput x{s['throughput_ratio']}, peak memory x{s['memory_ratio']}")
EOF
