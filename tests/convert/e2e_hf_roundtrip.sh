#!/usr/bin/env bash
# End to end through the executables: dsv3_train saves a model-only checkpoint of the debug model; dsv3_convert_hf
# exports it to Hugging Face (f32, 2 ranks, several shards) and imports it back (2 ranks); dsv3_eval gives the same
# loss on both checkpoints; dsv3_train starts a run from the import (checkpoint.initial_load_path).
#   e2e_hf_roundtrip.sh SOURCE_DIR DSV3_TRAIN DSV3_CONVERT_HF DSV3_EVAL MAKE_TEST_DATASET MPIEXEC [FLAGS...]
set -euo pipefail
source_dir="$1" trainer="$2" convert="$3" evaluate="$4" make_dataset="$5"
shift 5
mpiexec=("$@" -n 2)

work="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-e2e-hf.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "e2e_hf_roundtrip: FAILED: $*" >&2; exit 1; }
run() {
  local status=0
  "$@" >"$work/stdout" 2>"$work/stderr" || status=$?
  [ "$status" -eq 0 ] || { cat "$work/stdout" "$work/stderr"; fail "$* exited with $status"; }
}

"$make_dataset" "$work/data.h5" 200
common=(--training.device=cpu --job.config_file "$source_dir/inputs/debug_model.toml" --training.dataset_path="$work/data.h5"
        --model.hf_assets_path "" --job.dump_folder="$work/outputs" --metrics.peak_tflops=1 --training.seq_len=32
        --training.local_batch_size=2 --lr_scheduler.warmup_steps=1 --validation.enable=false)
run "${mpiexec[@]}" "$trainer" "${common[@]}" --training.steps=3 --checkpoint.enable=true \
  --checkpoint.last_save_model_only=true
trained="$work/outputs/checkpoint/step-3.h5"
[ -f "$trained" ] || fail "dsv3_train wrote no $trained"

run "${mpiexec[@]}" "$convert" export --checkpoint "$trained" --output "$work/hf" --dtype f32 --shard-size 20MB
[ -f "$work/hf/config.json" ] && [ -f "$work/hf/model.safetensors.index.json" ] || fail "export wrote no config/index"
[ "$(ls "$work"/hf/model-*-of-*.safetensors | wc -l)" -ge 2 ] || fail "export wrote one shard for 20MB shards"
run "${mpiexec[@]}" "$convert" import --hf-dir "$work/hf" --output "$work/imported.h5"
grep -q "GB/s on 2 rank(s)" "$work/stderr" || { cat "$work/stderr"; fail "import reported no rate"; }

echo "0 5 17 99 3 250 1 42 7 7 8 1000" >"$work/tokens.txt"
run "$evaluate" --checkpoint "$trained" --tokens-file "$work/tokens.txt"
before="$(cat "$work/stdout")"
run "$evaluate" --checkpoint "$work/imported.h5" --tokens-file "$work/tokens.txt" --output "$work/logits.npy"
after="$(cat "$work/stdout")"
echo "trained:  $before"
echo "imported: $after"
[ "$before" = "$after" ] || fail "the imported checkpoint evaluates differently"
[ -s "$work/logits.npy" ] || fail "dsv3_eval wrote no logits"

rm -rf "$work/outputs"
run "${mpiexec[@]}" "$trainer" "${common[@]}" --training.steps=3 --checkpoint.initial_load_path="$work/imported.h5"
grep -q "initial weights from $work/imported.h5" "$work/stdout" "$work/stderr" ||
  { cat "$work/stdout" "$work/stderr"; fail "dsv3_train did not start from the import"; }
echo "e2e_hf_roundtrip: passed"
