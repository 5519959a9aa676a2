# Prepared GPU check (device machine): one real two-stage training run at full scale on CUDA, end
# to end (generation, training with its in-loop evaluations, final evaluation), timed.
# Usage: bash tools/gpu_train.sh [iterations_fraction] (default: the preset's, 0.2 at full =
# 128,000 iterations per epoch, 256,000 in all). Carry .whl and .devcache as for gpu_check.sh;
# the log, metrics.json and metrics.log are written under $OUT.
set -u; export PYTHONUNBUFFERED=1 FLYVIS_STUDY_CACHE=$PWD/.devcache
OVERRIDE=(); [ $# -ge 1 ] && OVERRIDE=(-s training.iterations_fraction=$1)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name --format=csv,noheader
t0=$(date +%s.%N)
python3 -m flyvis_study.cli simulate --preset full --device cuda --no-progress 2>/dev/null | tee $OUT/train.txt
t1=$(date +%s.%N)
python3 -m flyvis_study.cli train --config params/two_stage.yaml --preset full --device cuda --no-plots \
  ${OVERRIDE[@]+"${OVERRIDE[@]}"} --out /tmp/run 2>$OUT/train_progress.txt | tee -a $OUT/train.txt
t2=$(date +%s.%N)
python3 -c "print(f'wall: generation {$t1 - $t0:.1f} s, training + evaluation {$t2 - $t1:.1f} s')" | tee -a $OUT/train.txt
cp /tmp/run/metrics.json /tmp/run/metrics.log $OUT/ 2>/dev/null; tail -c 400 $OUT/train_progress.txt
