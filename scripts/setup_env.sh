#!/usr/bin/env bash
# Create the project's virtual environment in .venv if it is missing or out of date, and
# install the package with its book and test extras into it.
#
# PyTorch comes first, so that pip never pulls the multi-GB CUDA build on a machine without
# an NVIDIA GPU: there, the CPU build is taken from PyTorch's CPU wheel index, or, where that
# index cannot be reached, the CPU build named by SNN_TORCH_CPU_SPEC (default torch==2.13.0+cpu)
# from the package sources pip is configured with. With a GPU, plain `pip install torch`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.snn-norm-lite-installed"
WANT=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

CPU_INDEX=https://download.pytorch.org/whl/cpu
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the default (CUDA) build of torch"
    "${PIP[@]}" install "torch>=2.1"
  elif "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$CPU_INDEX/torch/', timeout=15)" >/dev/null 2>&1; then
    echo "setup: no NVIDIA GPU; installing torch's CPU build from $CPU_INDEX"
    "${PIP[@]}" install --index-url "$CPU_INDEX" "torch>=2.1"
  else
    # The CPU index is out of reach: ask for the CPU build by its exact version, which only a
    # CPU wheel satisfies, so nothing can fall back to the CUDA build.
    spec=${SNN_TORCH_CPU_SPEC:-torch==2.13.0+cpu}
    echo "setup: no NVIDIA GPU and $CPU_INDEX is out of reach; installing $spec from the configured sources"
    "${PIP[@]}" install "$spec"
  fi
fi
if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then
  echo "setup: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') (CPU build)"
fi

"${PIP[@]}" install -e ".[book,test]"
echo "$WANT" > "$STAMP"
echo "setup: done ($VENV)"
