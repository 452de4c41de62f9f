#!/usr/bin/env bash
# Run the benchmark suite on a CUDA GPU in under 5 minutes (H100/H200 class) and check correctness first.
# Usage (from the repository root, on a machine with an NVIDIA GPU and a CUDA-enabled jax):
#   bash benchmarks/gpu.sh [OUT_DIR]
# Installs jax[cuda12] into a fresh venv unless JAX already sees a GPU.
set -euo pipefail
out="${1:-bench_out/gpu}"
py=python3
if ! "$py" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
  "$py" -m venv .venv-gpu
  .venv-gpu/bin/pip install --quiet -e . "jax[cuda12]>=0.10.2,<0.13"
  py=.venv-gpu/bin/python
fi
"$py" -c 'import jax; print(jax.devices())'
timeout 120 "$py" -m jax_tconv                       # every method against the reference, on the GPU
timeout 240 "$py" -m jax_tconv bench --rounds 20 --no-torch --out "$out"
timeout 120 "$py" -m jax_tconv bench --rounds 20 --no-torch --dtype bfloat16 --layers dcgan,3d \
  --out "$out/bf16"
