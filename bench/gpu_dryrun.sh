#!/usr/bin/env bash
# Rehearses the device call here, on the CPU, at no device time: a virtualenv shaped like the
# lent image (its torch, torchvision and onnxruntime versions and the other packages the code
# meets there; no PyAV, InsightFace, pydantic or redis-py), the wheels bench/gpu_carry.sh
# carries (built for this Python), a copy of the tracked files plus .gpu/, and then
# bench/gpu_run.sh as the device runs it. A package the image lacks, a torch API newer than
# its 2.11, or a broken step shows up here instead of in 15 scarce GPU minutes. What it cannot
# show is CUDA: the GPU-only tests skip and the CPU runs the sections. About 5 minutes here.
# IMAGE_VENV (default /tmp/fame-gpu-image) is reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_VENV="${IMAGE_VENV:-/tmp/fame-gpu-image}"
if [ ! -e "$IMAGE_VENV/.complete" ]; then  # an interrupted install is started again
  rm -rf "$IMAGE_VENV"
  python3 -m venv "$IMAGE_VENV"
  # the lent image's versions where the code depends on them (KINDS.md in the device tool's
  # library lists its packages); its Python is 3.12, this machine has 3.11
  .venv/bin/uv pip install -q --python "$IMAGE_VENV/bin/python3" torch==2.11.0 \
    torchvision==0.26.0 onnxruntime==1.30.0 onnx==1.23.1 numpy opencv-python-headless \
    scikit-image scikit-learn scipy prometheus-client tqdm matplotlib requests pillow pytest \
    pytest-timeout
  touch "$IMAGE_VENV/.complete"
fi
WORK="$(mktemp -d /tmp/fame-gpu-dryrun.XXXXXX)"
CARRY_PY="$("$IMAGE_VENV/bin/python3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  WHL_DIR="$WORK/.whl" bash bench/gpu_carry.sh > "$WORK/carry.log"
# the files the device gets: tracked and untracked-not-ignored ones, as they are (a deleted one
# is left out, not an error)
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done |
  xargs -0 cp --parents -t "$WORK"
cp -r .gpu "$WORK/"
mkdir -p "$WORK/out"
echo "rehearsal in $WORK (log: $WORK/out/log)"
(cd "$WORK" && PATH="$IMAGE_VENV/bin:$PATH" OUT="$WORK/out" SITE="$WORK/site" \
  bash bench/gpu_run.sh 2>&1 | tee "$WORK/out/log")
ls "$WORK/out"/gpu-frontend-embedded.json "$WORK/out"/gpu-model.json
