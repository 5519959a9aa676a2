# Prepared GPU window (device machine): train the full-scale plan's next runs (issue 30's plan:
# block 7's arms at blank 0, flyvis model 000 as ground truth) until the budget, then pack every
# run trained into $OUT, one <run_id>.tar.gz each (the cut run with its within-epoch checkpoint).
# The in-flight runs of earlier windows travel with the working tree (reports/examples/full/runs/).
# Usage: bash tools/gpu_window.sh [budget, default 7m] [replicates, default 2]
# Carry .whl (pydantic, pydantic_core, annotated_types, typing_inspection, netCDF4, cftime, certifi for cp312)
# and .devcache (connectome/fib25-fib19_v2.2.json), as for gpu_check.sh. Back here:
#   flyvis-study window 7 <the same -p> --out reports/examples/full --unpack <files_at>/*.tar.gz
set -u; export PYTHONUNBUFFERED=1 FLYVIS_STUDY_CACHE=$PWD/.devcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"
python3 -m flyvis_study.cli window 7 --preset full --out reports/examples/full \
  -p device=cuda -p cache_dir=/tmp/datasets -p replicates=${2:-2} -p "blank_fraction=[0]" \
  -p "arms=[gold_standard, two_stage_constant_schedule, standard_2_epochs_constant_schedule, silent_anchor, observed_target]" \
  --budget ${1:-7m} --checkpoint-every 2m --pack $OUT 2>$OUT/window_err.txt | tee $OUT/window.txt
tail -c 600 $OUT/window_err.txt; ls -la $OUT
