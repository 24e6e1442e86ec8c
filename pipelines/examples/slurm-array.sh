#!/usr/bin/env bash
# Shard a quantlens pipeline over a Slurm job array, then merge the shards in a dependent job.
#
#   bash pipelines/examples/slurm-array.sh pipelines/examples/boolq-stories260k.yaml 16
#
# Each array task runs slice i of n (round-robin over the dataset rows) and writes
# <output>/shard-<i>-of-<n>/ with its tables and state.json. `quantlens merge` refuses an
# incomplete or mixed set, then writes predictions.parquet, the estimator tables, calibration,
# summary.json and report.html into <output> exactly as one run would.
# A task that is preempted or times out can be requeued: --resume continues from its
# <shard dir>/state/checkpoint.json (written every `checkpoint_every` batches).
set -euo pipefail

PIPELINE=${1:?usage: slurm-array.sh PIPELINE.yaml [SHARDS]}
SHARDS=${2:-16}
OUTPUT=${QUANTLENS_OUTPUT:-runs/$(basename "${PIPELINE%.*}")}
# How to start quantlens on the nodes, and what each task asks of Slurm (override to fit the cluster).
QUANTLENS=${QUANTLENS_CMD:-npx quantlens}
CPUS=${QUANTLENS_SLURM_CPUS:-4}
MEM=${QUANTLENS_SLURM_MEM:-16G}
TIME=${QUANTLENS_SLURM_TIME:-04:00:00}

array_job=$(sbatch --parsable \
  --job-name=quantlens-shard \
  --array=0-$((SHARDS - 1)) \
  --cpus-per-task="$CPUS" --mem="$MEM" --time="$TIME" \
  --requeue \
  --output="slurm-%A_%a.out" \
  --wrap="$QUANTLENS run '$PIPELINE' --output '$OUTPUT' --shard \$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT --resume --quiet")

# afterok: only when every array task succeeded.
merge_job=$(sbatch --parsable \
  --job-name=quantlens-merge \
  --dependency=afterok:"$array_job" \
  --cpus-per-task=1 --mem="$MEM" --time=00:30:00 \
  --output="slurm-%j-merge.out" \
  --wrap="$QUANTLENS merge '$OUTPUT'/shard-*-of-$SHARDS --output '$OUTPUT' --quiet")

echo "submitted array job $array_job ($SHARDS shards) and merge job $merge_job → $OUTPUT"
