#!/usr/bin/env bash
# Builds, on this machine, everything the GPU check needs and stages it in one folder, so that a
# machine with only the NVIDIA driver (no Rust, no LLVM, no CUDA toolkit) runs it with one command:
#
#   scripts/gpu-check.sh [STAGE_DIR]        # default: target/gpu-stage
#   STAGE_DIR/run.sh [--bench]              # on the GPU machine
#
# STAGE_DIR holds:
#   tilekit-gpucheck      the checker, built without `jit`: it links no LLVM or MLIR and loads
#                         libcuda (and cuBLAS, for the benchmark's baseline) at run time
#   bundle-<target>/      every registered kernel compiled to PTX, with metadata (tilekit bundle)
#   run.sh                runs the checker on the bundle; finds cuBLAS for --bench
#   bench-torch.py        PyTorch's figures at the benchmark's shapes (SDPA cuDNN/flash, fused
#                         AdamW, Muon, cross-entropy, torch._grouped_mm); `run.sh --bench` runs it
#                         after the checker where `python3 -c 'import torch'` works, so one run
#                         prints both tables (TILEKIT_TORCH_BENCH=0 skips it)
# TILEKIT_GPU_TARGET picks the target (sm_90a by default; sm_80 for Ampere or anything newer).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-target/gpu-stage}
target=${TILEKIT_GPU_TARGET:-sm_90a}

scripts/install-deps.sh
cargo build --release -p tilekit --bin tilekit
rm -rf "$stage"
mkdir -p "$stage"
target/release/tilekit bundle --target "$target" --out "$stage/bundle-$target"
# A separate target directory: the runtime-only build must not reuse the jit build's features.
CARGO_TARGET_DIR=target/runtime-only cargo build --release -p tilekit --no-default-features \
    --bin tilekit-gpucheck
cp target/runtime-only/release/tilekit-gpucheck "$stage/"
cp scripts/bench-torch.py "$stage/"

cat > "$stage/run.sh" <<RUN
#!/usr/bin/env bash
# Runs the tilekit GPU check (and with --bench, the benchmark) on this machine's first CUDA GPU.
set -uo pipefail
here=\$(cd "\$(dirname "\$0")" && pwd)
if [ -z "\${TILEKIT_CUBLAS:-}" ]; then
  # cuBLAS for the benchmark's baseline: a CUDA toolkit's, or the one PyTorch's wheels carry.
  for d in /usr/local/cuda/lib64 \$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    f=\$(find "\$d" -name 'libcublas.so*' -not -name '*Lt*' 2>/dev/null | sort | head -n1)
    if [ -n "\$f" ]; then export TILEKIT_CUBLAS=\$f; export LD_LIBRARY_PATH=\$(dirname "\$f"):\${LD_LIBRARY_PATH:-}; break; fi
  done
fi
"\$here/tilekit-gpucheck" --bundle "\$here/bundle-$target" "\$@"
rc=\$?
case " \$* " in
  *" --bench "*)
    if [ "\${TILEKIT_TORCH_BENCH:-1}" != 0 ] && python3 -c 'import torch' 2>/dev/null; then
      python3 "\$here/bench-torch.py" || { [ \$rc -ne 0 ] || rc=1; }
    else
      echo "PyTorch baselines skipped (no python3 with torch, or TILEKIT_TORCH_BENCH=0)"
    fi
    ;;
esac
exit \$rc
RUN
chmod +x "$stage/run.sh"

glibc=$(objdump -T "$stage/tilekit-gpucheck" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)
echo "staged in $stage: tilekit-gpucheck (needs $glibc or newer), bundle-$target ($(ls "$stage/bundle-$target" | grep -c '\.ptx$') kernels), run.sh, bench-torch.py"
echo "on the GPU machine: $stage/run.sh [--bench]"
