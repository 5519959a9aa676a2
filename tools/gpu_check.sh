# Prepared GPU check (device machine): GPU tests, full-scale bench, small-preset blocks 0 and 1 on CUDA.
# Needs .whl (pydantic, pydantic_core, annotated_types, typing_inspection, h5netcdf for cp312) and
# .devcache/connectome/fib25-fib19_v2.2.json carried; writes results under $OUT.
set -u; export PYTHONUNBUFFERED=1 FLYVIS_STUDY_CACHE=$PWD/.devcache PYTHONPATH=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"
(python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_model.py 2>&1 | tail -5) | tee $OUT/gpu_tests.txt
python3 -m flyvis_study.cli bench --preset full --device cuda --json > $OUT/bench_full_cuda.json 2>$OUT/bench_err.txt; cat $OUT/bench_full_cuda.json; tail -3 $OUT/bench_err.txt
G=true; grep -q "failed\|error" $OUT/gpu_tests.txt && G=false; grep -q graph_ms_per_iter $OUT/bench_full_cuda.json || G=false
python3 - <<PY 2>&1 | grep -v Warning | tee $OUT/blocks.txt
import time, torch
from flyvis_study.blocks import run_block
t=time.time()
for b in (0, 1):
    r = run_block(b, "reports/small", preset="small", replicates=6, device="cuda", progress=False,
                  overrides={"training.cuda_graph": $( [ $G = true ] && echo True || echo False )})
    print(b, round(time.time()-t), r.statistics[["n_runs","connectivity_R2_mean","V_rest_R2_mean","tau_R2_mean","training_time_min_mean"]].to_string())
PY
tar czf $OUT/small_runs.tgz --exclude='checkpoints' reports/small; ls -la $OUT
