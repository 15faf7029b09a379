#!/usr/bin/env bash
# Evaluate one system on a dataset as a SLURM array of shards, then merge them in a dependent job.
#
#   bash docs/examples/slurm_array.sh            # on a SLURM login node, from the project folder
#   SHARDS=16 OUT=runs/ls-hubert bash docs/examples/slurm_array.sh
#
# Array task k evaluates shard k-MIN of COUNT (`--shard auto` reads SLURM_ARRAY_TASK_ID,
# SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT) into $OUT/shards/shard-k-of-COUNT, an ordinary
# resumable run folder: a task that is preempted or times out is resubmitted with the same
# command and continues where it stopped. The merge job runs after every task has ended
# (afterany: a task that exits 3 because many utterances failed still finished its shard) and
# writes $OUT, an ordinary run folder; it refuses, naming them, shards that are missing or
# incomplete - resubmit those tasks (sbatch --array=3,7 ...) and merge again.
# Corpus-level steps need nothing extra: every shard fits the speaker classifier on the whole
# dataset's real recordings, so the merged numbers equal a single-process run's.
set -euo pipefail

SHARDS=${SHARDS:-8}                       # array size = number of shards
OUT=${OUT:-runs/vctk-world}               # the merged run; shards go to $OUT/shards/
CPUS=${CPUS:-4}                           # per task: --jobs workers
RUN_ARGS=${RUN_ARGS:---system world --dataset vctk --data-root /data/VCTK-Corpus-0.92 --metrics fast}
# a shared cache lets every shard reuse the reference analyses (the speaker model's embeddings
# of the whole corpus are computed once, not once per shard)
export RESYN_BENCH_HOME=${RESYN_BENCH_HOME:-$HOME/.cache/resyn-bench}

array_id=$(sbatch --parsable --job-name=resyn-shard --array="0-$((SHARDS - 1))" \
    --cpus-per-task="$CPUS" --mem=16G --time=08:00:00 --output="slurm-%A_%a.out" \
    --wrap="resyn-bench run $RUN_ARGS --out $OUT --shard auto --jobs $CPUS --quiet")
echo "submitted shards: job $array_id (array 0-$((SHARDS - 1)))"

merge_id=$(sbatch --parsable --job-name=resyn-merge --dependency="afterany:$array_id" \
    --cpus-per-task=1 --mem=4G --time=01:00:00 --output="slurm-%j-merge.out" \
    --wrap="resyn-bench merge --out $OUT")
echo "submitted merge: job $merge_id (after $array_id); then: resyn-bench summary $OUT"
