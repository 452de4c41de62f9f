#!/usr/bin/env bash
# Run the benchmark suites on a CUDA GPU (H100/H200 class) and check correctness first: the
# self-check, the layer suite in both layouts (float32, and bfloat16 on two layers), the
# model suite (training steps), method="tune" against "auto", and compile times.
# Usage (from the repository root, on a machine with an NVIDIA GPU and a CUDA-enabled jax):
#   bash benchmarks/gpu.sh [OUT_DIR]
# Installs jax[cuda12] into a fresh venv unless JAX already sees a GPU.
set -euo pipefail
out="${1:-bench_out/gpu}"
py=python3
if ! "$py" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
  "$py" -m venv .venv-gpu
  .venv-gpu/bin/pip install --quiet -e ".[examples]" "jax[cuda12]>=0.10.2,<0.13"
  py=.venv-gpu/bin/python
fi
"$py" -c 'import jax; print(jax.devices())'
timeout 120 "$py" -m jax_tconv                       # every method against the reference, on the GPU
timeout 300 "$py" benchmarks/bench.py --rounds 20 --no-torch --layout both --out "$out"
timeout 120 "$py" benchmarks/bench.py --rounds 20 --no-torch --dtype bfloat16 --layers dcgan,3d \
  --out "$out/bf16"
timeout 240 "$py" benchmarks/bench.py --models --rounds 10 --no-torch --out "$out/models"
JAX_TCONV_TUNE_CACHE="$out/tune.json" timeout 300 "$py" benchmarks/tune_vs_auto.py --rounds 15 \
  | tee "$out/tune_vs_auto.md"
timeout 300 "$py" benchmarks/compile_time.py --repeats 2 | tee "$out/compile_time.md"
