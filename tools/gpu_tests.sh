# Short GPU check: the CUDA tests and the small-preset bench on the device machine (see gpu_check.sh).
set -u; export PYTHONUNBUFFERED=1 FLYVIS_STUDY_CACHE=$PWD/.devcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/train/test_gpu.py 2>&1 | tail -4 | tee $OUT/gpu_tests.txt
timeout 100 python3 -m flyvis_study.cli bench --preset small --device cuda --json --no-eval > $OUT/bench_small_cuda.json 2>/dev/null; cat $OUT/bench_small_cuda.json
