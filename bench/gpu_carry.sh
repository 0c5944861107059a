#!/usr/bin/env bash
# Prepares what a lent GPU machine (bare image: Python 3.12 + torch, no PyAV/InsightFace/pydantic)
# needs to run `bench.run --only model` and `--only frontend embedded`, within the device tool's
# 64 MiB carry limit (about 50 MiB with the repository):
#   .whl/  PyAV, InsightFace, pydantic(-settings), redis-py and pytest wheels for CPython 3.12
#          (versions of this .venv; the image has torch, onnxruntime, OpenCV, prometheus-client)
#   .gpu/  the front-end, event and latency (driving_d10) videos, the six-face photo of the
#          detector tests, and SCRFD-500M
# (the synth probe's crops, `--save-crops`, are 11 MB more; that probe is host-bound there)
# Both folders are git-ignored here (.git/info/exclude). Then one device call with
# carry [".gpu", ".whl"] runs `bash bench/gpu_run.sh` (see docs/benchmarks.md);
# `bash bench/gpu_dryrun.sh` rehearses that call here first, on the CPU, at no device time.
# CARRY_PY (default 3.12, the image's Python) and WHL_DIR (default .whl) serve the rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${FAME_SHARED_DIR:-../shared}"
PY=.venv/bin/python
CARRY_PY="${CARRY_PY:-3.12}"
WHL_DIR="${WHL_DIR:-.whl}"

for ignored in /.whl/ /.gpu/; do
  grep -qxF "$ignored" .git/info/exclude || echo "$ignored" >> .git/info/exclude
done

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf "$WHL_DIR" && mkdir -p "$WHL_DIR"  # one version of each: two stop the install there
for name in av insightface pydantic pydantic_core annotated-types typing-inspection typing_extensions \
    pydantic-settings python-dotenv redis pytest pluggy iniconfig packaging pygments; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$CARRY_PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHL_DIR" "$name==$(version "$name")"
done

rm -rf .gpu  # only what this call needs: the carry limit counts every byte
mkdir -p .gpu/shared/data/samples .gpu/shared/data/faces .gpu/shared/models
cp "$SHARED"/data/samples/{carphone_pristine.mp4,group_t1.jpg} .gpu/shared/data/samples/
cp "$SHARED"/data/faces/{driving_d0,driving_d10,driving_d11,driving_d18,driving_d19,source_s32}.mp4 \
  .gpu/shared/data/faces/
cp "$SHARED/models/scrfd_500m_bnkps.onnx" .gpu/shared/models/

du -sh "$WHL_DIR" .gpu
echo "carried in all (repository files + wheels + .gpu), limit 64 MiB:"
{ git ls-files -z | xargs -0 du -cb | tail -1; du -sb "$WHL_DIR" .gpu; } | awk '{s += $1} END {printf "%.1f MiB\n", s / 1048576}'
echo 'device command (carry [".gpu", ".whl"], timeout_s about 580): bash bench/gpu_run.sh'
