#!/usr/bin/env bash
# Installs what tilekit builds and tests with. Idempotent: quiet when everything is present.
#   - LLVM/MLIR 22 and lld (Debian packages) for the compiler,
#   - ptxas and nvdisasm (PyPI nvidia-cuda-nvcc / nvidia-cuda-nvdisasm) in a virtual environment
#     inside the repository (.venv, git-ignored): offline validators, nothing runs on a GPU.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
apt_packages=(llvm-22-dev libmlir-22-dev mlir-22-tools lld-22 libpolly-22-dev
              libzstd-dev libz3-dev libxml2-dev libffi-dev zlib1g-dev
              libclang-22-dev)  # libclang-22-dev: bindgen (mlir-sys, tblgen) needs libclang
pip_packages=(nvidia-cuda-nvcc nvidia-cuda-nvdisasm)

log() { printf 'install-deps: %s\n' "$*" >&2; }

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# MLIR's C API as one shared library. Debian ships libMLIR.so (all of MLIR's C++ libraries, linked
# against libLLVM.so) but the C API (libMLIRCAPI*.a) only as static archives; mlir-sys links shared
# (MLIR_SYS_LINK_SHARED in .cargo/config.toml) against libMLIR and libMLIR-C. Linking shared keeps
# each test binary a few megabytes instead of ~300 MB with MLIR and LLVM copied in (CI's disk ran
# out at ~30 such binaries) and gives the process one LLVM, the one inkwell already loads.
llvm_lib=/usr/lib/llvm-22/lib
mlir_c="$llvm_lib/libMLIR-C.so"
if [ ! -e "$mlir_c" ] || [ "$llvm_lib/libMLIR.so.22.1" -nt "$mlir_c" ]; then
    log "linking $mlir_c from $llvm_lib/libMLIRCAPI*.a"
    scratch="$(mktemp -d)"
    c++ -shared -o "$scratch/libMLIR-C.so" \
        -Wl,--whole-archive "$llvm_lib"/libMLIRCAPI*.a -Wl,--no-whole-archive \
        -L"$llvm_lib" -lMLIR -lLLVM -Wl,--no-undefined -Wl,-rpath,"$llvm_lib"
    sudo_if_needed install -m 0644 "$scratch/libMLIR-C.so" "$mlir_c"
    rm -rf "$scratch"
fi

find_tool() { # name -> path of the tool inside the venv's nvidia packages, or nothing
    find "$venv/lib" -path '*nvidia*' -name "$1" -type f 2>/dev/null | head -n 1
}

if [ ! -x "$venv/bin/python" ]; then
    log "creating the Python virtual environment $venv"
    python3 -m venv "$venv"
fi
if [ -z "$(find_tool ptxas)" ] || [ -z "$(find_tool nvdisasm)" ]; then
    log "installing ${pip_packages[*]} into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${pip_packages[@]}"
fi

ptxas="$(find_tool ptxas)"
nvdisasm="$(find_tool nvdisasm)"
for t in "$ptxas" "$nvdisasm"; do
    [ -n "$t" ] && chmod +x "$t"
done
# Stable paths for the tools, whatever the wheel's layout.
mkdir -p "$venv/tools"
ln -sf "$ptxas" "$venv/tools/ptxas"
ln -sf "$nvdisasm" "$venv/tools/nvdisasm"

# One line, always: where each tool is.
log "llvm $(/usr/lib/llvm-22/bin/llvm-config --version) and mlir-opt, ld.lld in /usr/lib/llvm-22/bin;" \
    "ptxas: $venv/tools/ptxas; nvdisasm: $venv/tools/nvdisasm"
