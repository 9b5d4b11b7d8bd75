#!/usr/bin/env bash
# Issue #18's long training runs on a lent GPU, in one device call (see docs/benchmarks.md).
#
# Runs the resumable checkpoints under checkpoints/ (and two ablation arms) side by side, one process
# each, for MINUTES of training, then packs the results under $OUT in pieces the device tool returns
# (at most 8 files of 16 MiB). Every random draw stays on the CPU generators (steerdiff train --device),
# so the runs are the same runs as on a CPU, up to float rounding.
#
#   MINUTES=7 bash benchmarks/gpu/train_runs.sh                   # on the device machine, .whl carried
#   RUNS='mnist-small circle' MINUTES=3 bash benchmarks/gpu/train_runs.sh   # only those runs
#   RUNS=mnist-small-b256 KEEP_STATE=mnist-small-b256 MINUTES=8 bash ...      # an arm, resumable
set -u
MINUTES=${MINUTES:-7}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" runs logs
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
DEVICE=${DEVICE:-cuda}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())" || exit 1
# a 20-step smoke run first: a broken environment fails in seconds, not after the whole budget
python3 -m steerdiff train --dataset mnist --net tiny --steps 20 --out /tmp/smoke --device "$DEVICE" --quiet || exit 1

RUNS=${RUNS:-mnist-small-b256 horizontal circle colormnist-small}  # mnist-small finished (60,000 steps)
want() { [[ " $RUNS " == *" $1 "* ]]; }
train() {  # NAME DIR FLAGS...
    local name=$1 dir=$2
    shift 2
    want "$name" || return 0
    (
        SECONDS=0
        python3 -m steerdiff train "$@" --out "$dir" --device "$DEVICE" --time-limit "$MINUTES" --checkpoint-every 1000 --quiet
        echo "rc=$? wall_s=$SECONDS"
    ) >"logs/$name.log" 2>&1 &
}
train mnist-small checkpoints/mnist-small --dataset mnist --objective edm --class-conditional --p-uncond 0.5 \
    --net small --steps 60000 --seed 0
train mnist-small-b256 runs/mnist-small-b256 --dataset mnist --objective edm --class-conditional --p-uncond 0.5 \
    --net small --batch-size 256 --lr 0.001 --ema-decay 0.9998 --steps 60000 --seed 0
train horizontal checkpoints/horizontal --dataset horizontal --cond-frames 2 --p-right 0.7 --objective edm \
    --steps 60000 --seed 0
train circle checkpoints/circle --dataset circle --cond-frames 1 --objective edm --steps 40000 --seed 0
train colormnist-small checkpoints/colormnist-small --dataset colormnist-sets --class-conditional --objective edm \
    --net small --steps 40000 --seed 0
sleep 30 && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
wait
for f in logs/*.log; do echo "== $f"; tail -n 3 "$f"; done
python3 - <<'PY'
import json, pathlib
for d in ["checkpoints/mnist-small", "runs/mnist-small-b256", "checkpoints/horizontal", "checkpoints/circle", "checkpoints/colormnist-small"]:
    p = pathlib.Path(d) / "state.json"
    if p.is_file():
        m = json.loads(p.read_text())
        print(d, "step", m["step"], "devices", m.get("devices"), "loss(last 500)", round(sum(m["losses"][-500:]) / max(1, len(m["losses"][-500:])), 4))
PY
# resumable runs whole (state included); ablation arms without the optimizer state
! want mnist-small || tar cf - checkpoints/mnist-small | split -b 15m - "$OUT/mnist-small.tar."
! want horizontal || tar cf "$OUT/horizontal.tar" checkpoints/horizontal
! want circle || tar cf "$OUT/circle.tar" checkpoints/circle
! want colormnist-small || tar cf - checkpoints/colormnist-small | split -b 15m - "$OUT/colormnist-small.tar."
# ablation arms: EMA weights and losses only, unless KEEP_STATE names them (then whole, split in 15 MiB
# pieces, so the next GPU session can resume them; mind the 64 MiB the device returns)
for d in runs/*; do
    n=$(basename "$d")
    [ -d "$d" ] && want "$n" || continue
    if [[ " ${KEEP_STATE:-} " == *" $n "* ]]; then
        tar cf - "$d" | split -b 15m - "$OUT/$n.tar."
    else
        tar cf "$OUT/$n.tar" --exclude state.safetensors "$d"
    fi
done
tar czf "$OUT/logs.tgz" logs
ls -la "$OUT"
