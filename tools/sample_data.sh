# shellcheck shell=bash
# Sourced by run_train.sh: the bundled sample corpus that the default configs train on.
#
#   dsv3_prepare_sample_data BUILD_DIR OUT_DIR
#
# makes, from the English text of Debian's `fortunes` package (/usr/share/games/fortunes, one fortune per
# document, fortunes separated by lines holding "%"):
#   OUT_DIR/tokenizer/tokenizer.json, tokenizer_config.json   a byte-level BPE tokenizer with 2048 tokens (the
#                                                             debug model's vocabulary), BOS/EOS as DeepSeek-V3's
#   OUT_DIR/fortunes.h5                                       the corpus as a token dataset, tokenized with it
# using BUILD_DIR/apps/dsv3_preprocess/dsv3_preprocess. Idempotent: what exists is kept, and the dataset is
# remade only when the tokenizer is newer than it. The validation part is split off when training: the configs
# hold out the last windows of fortunes.h5 (validation.holdout_fraction; see dsv3::data::DataLoader).
#
# Training on your own corpus instead (C4's en/*.json.gz, any JSONL with a "text" field, or plain text):
#   mpiexec -n 16 dsv3_preprocess tokenize --tokenizer PATH/TO/tokenizer.json --output /scratch/c4_train.h5 \
#       /data/c4/en/c4-train.*.json.gz
#   mpiexec -n 16 dsv3_preprocess tokenize --tokenizer PATH/TO/tokenizer.json --output /scratch/c4_val.h5 \
#       /data/c4/en/c4-validation.*.json.gz
# then set, in the run config or on the command line:
#   [model] hf_assets_path = "PATH/TO"                  (the folder of tokenizer.json)
#   [training] dataset_path = "/scratch/c4_train.h5"
#   [validation] dataset_path = "/scratch/c4_val.h5"    (or leave it empty to hold out part of the training data)
# dsv3_train also reads text/JSONL paths directly, tokenizing them when it starts: fine for small corpora.
# Plain-text corpora: --text-separator file (one document per file), blank (blank lines) or line=TEXT;
# JSONL with the text elsewhere: --json-text-field FIELD. `dsv3_preprocess COMMAND --help` lists every option.

dsv3_prepare_sample_data() {
  local build_dir="$1" out_dir="$2"
  local preprocess="$build_dir/apps/dsv3_preprocess/dsv3_preprocess"
  local tokenizer_dir="$out_dir/tokenizer"
  local dataset="$out_dir/fortunes.h5"
  local tokenizer_json="$tokenizer_dir/tokenizer.json"
  if [ -f "$tokenizer_json" ] && [ -f "$dataset" ] && [ ! "$tokenizer_json" -nt "$dataset" ]; then
    return 0
  fi
  if [ ! -x "$preprocess" ]; then
    echo "dsv3: $preprocess is missing; build dsv3 first" >&2
    return 1
  fi
  # The fortune files themselves: not their .dat indexes, not the .u8 links to them, not the offensive ones
  # in off/.
  local fortunes=()
  mapfile -t fortunes < <(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' 2>/dev/null |
    LC_ALL=C sort)
  if [ ${#fortunes[@]} -eq 0 ]; then
    echo "dsv3: no fortune files in /usr/share/games/fortunes; install the Debian package 'fortunes'" >&2
    return 1
  fi
  mkdir -p "$out_dir"
  if [ ! -f "$tokenizer_json" ]; then
    echo "dsv3: training the sample tokenizer (2048 tokens) on ${#fortunes[@]} fortune files"
    "$preprocess" train-tokenizer --vocab-size 2048 --output "$tokenizer_dir" --text-separator 'line=%' --quiet \
      "${fortunes[@]}" || return 1
  fi
  echo "dsv3: tokenizing the sample corpus into $dataset"
  "$preprocess" tokenize --tokenizer "$tokenizer_dir" --output "$dataset" --text-separator 'line=%' --quiet \
    "${fortunes[@]}"
}
