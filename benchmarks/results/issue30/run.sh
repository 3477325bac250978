#!/bin/bash
# Issue 30 "numbers must not change": each benchmark on 0.3.0 (a worktree of 72a7d52) and on this tree, back to back.
OUT=/work/main/benchmarks/results/issue30
PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1
for round in 1 2; do
  (cd /tmp/v030 && PYTHONPATH=/tmp/v030 $PY benchmarks/trainer_speed.py --rounds 5 --epochs 4) > $OUT/trainer_speed_before_$round.txt 2>&1
  (cd /work/main && $PY benchmarks/trainer_speed.py --rounds 5 --epochs 4) > $OUT/trainer_speed_after_$round.txt 2>&1
  (cd /tmp/v030 && PYTHONPATH=/tmp/v030 $PY benchmarks/driver_overhead.py --trials 30 --epochs 5 --no-ask) > $OUT/driver_overhead_before_$round.txt 2>&1
  (cd /work/main && $PY benchmarks/driver_overhead.py --trials 30 --epochs 5 --no-ask) > $OUT/driver_overhead_after_$round.txt 2>&1
done
(cd /tmp/v030 && PYTHONPATH=/tmp/v030 $PY benchmarks/scale.py --sizes 1000 --only grow --out $OUT/scale_before.json) > $OUT/scale_before.txt 2>&1
(cd /work/main && $PY benchmarks/scale.py --sizes 1000 --only grow --out $OUT/scale_after.json) > $OUT/scale_after.txt 2>&1
echo done > $OUT/DONE
