#!/usr/bin/env bash
# What one device call runs on a lent GPU machine, from the repository root, with
# carry [".gpu", ".whl"] as bench/gpu_carry.sh prepared them: the detector tests that only a GPU
# can check (CUDA-graph replay against eager), then the front-end + embedded and the model
# sections of the bench, raw files under $OUT (the model section, measured before, runs last,
# so a call cut short loses it first; bench.run writes its file after every section).
# bench/gpu_dryrun.sh runs this same script here on the CPU, in an image-shaped virtualenv.
set -o pipefail
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 FAME_SHARED_DIR=.gpu/shared
SITE="${SITE:-/tmp/site}"
: "${OUT:?OUT must name the folder for the raw results}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl || exit
export PYTHONPATH="$SITE"
# bounded: a CUDA graph capture that hangs must not eat the call (here ~15 s on 2 CPU cores)
# the whole test output comes back as $OUT/gpu-tests.txt; failures are summarised here
timeout 180 python3 -m pytest -q -p no:cacheprovider -rfE --tb=short tests/test_torch_session.py \
  tests/test_scrfd_frame.py tests/test_detector_size.py tests/test_detect_batch.py >"$OUT/gpu-tests.txt" 2>&1
status=$?
grep -E '^(FAILED|ERROR|E  )' "$OUT/gpu-tests.txt" | head -30
tail -3 "$OUT/gpu-tests.txt"
echo "GPU tests exit status: $status (124: timed out)"
python3 -m bench.run --only frontend embedded --out "$OUT/gpu-frontend-embedded.json"
python3 -m bench.run --only model --out "$OUT/gpu-model.json"
