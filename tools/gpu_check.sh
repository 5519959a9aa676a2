# Prepared GPU check (device machine): full-scale bench on CUDA, the CUDA tests, a kernel
# profile of the step, and the graph step of earlier versions carried in .old/<commit>/ (each a
# copy of flyvis_study/ and params/, e.g. from git archive), run from inside that folder.
# Carry .whl (pydantic, pydantic_core, annotated_types, typing_inspection, netCDF4, cftime, certifi for cp312)
# and .devcache (connectome/fib25-fib19_v2.2.json); results are written under $OUT.
set -u; export PYTHONUNBUFFERED=1 FLYVIS_STUDY_CACHE=$PWD/.devcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"
timeout 270 python3 -m flyvis_study.cli bench --preset full --device cuda --json > $OUT/bench_full_cuda.json 2>$OUT/bench_err.txt
cat $OUT/bench_full_cuda.json; echo; tail -3 $OUT/bench_err.txt
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/train/test_gpu.py 2>&1 | tail -15 | tee $OUT/gpu_tests.txt
# issue 26's open case for replicate stacking: 12 small-preset runs stacked on the GPU against one
# run alone, alternating in one process; stacking is kept only at <= 0.67x per run (docs/benchmarks.md)
timeout 120 python3 -m flyvis_study.cli bench --preset small --device cuda --json --no-eval --naive-iters 1 \
  --fast-iters 60 --replicates 12 > $OUT/bench_stack12_small_cuda.json 2>/dev/null
python3 -c "import json; r=json.load(open('$OUT/bench_stack12_small_cuda.json')); print('stack 12:', {k: v for k, v in r.items() if 'stack' in k or 'replica' in k})"
timeout 80 python3 tools/gpu_profile.py full $OUT > $OUT/profile.txt 2>&1; grep "^==" $OUT/profile.txt
for d in .old/*/; do
  (cd $d && timeout 60 python3 -m flyvis_study.cli bench --preset full --device cuda --json --no-eval --naive-iters 1 > $OUT/bench_$(basename $d).json 2>/dev/null)
  python3 -c "import json; r=json.load(open('$OUT/bench_$(basename $d).json')); print('$d', r['fast_ms_per_iter'], r.get('graph_ms_per_iter'))"
done
gzip -f $OUT/trace_*.json 2>/dev/null; ls -la $OUT
