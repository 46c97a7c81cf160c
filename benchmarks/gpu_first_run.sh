#!/usr/bin/env bash
# The first run on a GPU machine, in one command that fits in 10 minutes (issue 23):
#   1. extras: rosbags (for the timed rows) and tensorrt-cu<CUDA major of torch>, if missing;
#   2. the TensorRT and CUDA tests (test_tensorrt.py, the CUDA tests of test_backends.py);
#   3. benchmarks/default_path.py --device cuda: builds the default model's TensorRT FP16 and INT8
#      engines, times torch CUDA fp32/fp16 and TensorRT FP16/INT8 at the working size and at
#      375x1242 on the shipped KITTI frames (data/kitti/), and scores each against fp32 torch.
# Without a GPU it says so, and runs what a CPU can: the CPU tests of the same files and the CPU
# side of the benchmark (the INT8 model TensorRT would build, on ONNX Runtime).
#
# The GPU machine may have no package registry. Before the lease, on a machine that has one:
#     benchmarks/gpu_first_run.sh --fetch-wheels   # rosbags + its dependencies into .gpu_wheels/
# then run it there with that folder carried (about 6 MB; the checkout is about 55 MiB):
#     bash benchmarks/gpu_first_run.sh             # device tool: carry [".gpu_wheels"]
# TensorRT's own wheels are too large to carry: without a registry its rows are skipped, with one
# line saying so. onnxruntime-gpu is not installed: it would replace the CPU onnxruntime that the
# tests use, and no default path runs it.
# Environment: PYTHON (default python3), LIMIT (seconds for the whole run, default 570).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.gpu_wheels
LIMIT=${LIMIT:-570}
LOG=${OUT:-${TMPDIR:-/tmp}}/gpu_first_run
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "${1:-}" = "--fetch-wheels" ]; then  # for the GPU machine's Python 3.12 on x86-64
    exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" \
        rosbags==0.11.9 apsw backports.zstd lz4 ruamel.yaml
fi

mkdir -p "$LOG"
say() { echo "== $*"; }
left() { echo $((LIMIT - SECONDS)); }
pip_try() {  # a registry install that fails fast where there is no registry
    timeout 120 "$PY" -m pip install -q --disable-pip-version-check --timeout 5 --retries 0 "$@" \
        >>"$LOG/pip.log" 2>&1
}

gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
say "$(date -u +%FT%TZ) ${gpu:-no CUDA GPU}; $("$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")')"

say "extras"
if ! "$PY" -c 'import rosbags' 2>/dev/null; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_first_run_site \
            "$WHEELS"/*.whl >>"$LOG/pip.log" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_first_run_site"
    else
        pip_try rosbags
    fi
    "$PY" -c 'import rosbags' 2>/dev/null && echo "rosbags installed" \
        || echo "rosbags: not installed (no registry here and no $WHEELS/): the timed rows fail"
fi
if [ -z "$gpu" ]; then
    echo "no CUDA GPU: TensorRT not installed; GPU tests and rows skip"
elif "$PY" -c 'import tensorrt' 2>/dev/null; then
    echo "TensorRT $("$PY" -c 'import tensorrt; print(tensorrt.__version__)') is installed"
else
    wheel=$("$PY" -c 'import torch; from fcn_road_seg.backends.tensorrt_common import tensorrt_wheel as w; print(w(torch.version.cuda))')
    if pip_try "$wheel" && "$PY" -c 'import tensorrt' 2>/dev/null; then
        echo "installed $wheel ($("$PY" -c 'import tensorrt; print(tensorrt.__version__)'))"
    else
        echo "TensorRT: pip install $wheel failed (no package registry here?): TensorRT tests and rows skip"
    fi
fi

say "tests: TensorRT and CUDA"
budget=$(($(left) < 240 ? $(left) : 240))
timeout "$budget" "$PY" -m pytest test/test_tensorrt.py test/test_backends.py -q -rs \
    -p no:cacheprovider -k "test_tensorrt or cuda or gpu" 2>&1 | tee "$LOG/tests.log" | grep -v '^\[torch'
[ "${PIPESTATUS[0]}" = 124 ] && echo "the tests ran out of their $budget s"

say "speed and agreement with fp32: benchmarks/default_path.py --device cuda"
timeout "$(left)" "$PY" benchmarks/default_path.py --device cuda --images data/kitti/image_2 \
    --frames 5 --warmup 3 2>"$LOG/bench.err" | tee "$LOG/table.md"
case "${PIPESTATUS[0]}" in
    0) ;;
    124) echo "the benchmark ran out of time (LIMIT=$LIMIT s); rows done:"; grep '^row:' "$LOG/bench.err" ;;
    *) echo "the benchmark failed:"; grep -v '^\[torch' "$LOG/bench.err" | tail -n 5 ;;
esac
say "done in ${SECONDS} s; logs in $LOG"
