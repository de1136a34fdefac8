#!/usr/bin/env bash
# Regenerate the phantom sets that choose and judge models (README "Model"), into DIR:
#   DIR/test     held-out subjects LLP26_24-26, the test split of every scorecard
#   DIR/testfov  held-out subjects, fields of view with little or no femur
#   DIR/valall   training subjects only, the validation phantoms that choose rules and weights
# Each set is made with --resume, so a stopped run is finished by running this again.
#   [WORKERS=N] bash scripts/make_eval_sets.sh DIR [SHAPES]   (SHAPES: ../shared/shapes/llp26)
set -euo pipefail
out=${1:?usage: make_eval_sets.sh DIR [SHAPES]}
shapes=${2:-../shared/shapes/llp26}
held="--shapes $shapes --subjects LLP26_24,LLP26_25,LLP26_26"
train="--shapes $shapes --exclude-subjects LLP26_24,LLP26_25,LLP26_26"
mk() {  # folder, then femurseg phantom options; skipped when already finished
    local dir=$1
    shift
    if [ -f "$dir/dataset.json" ] && [ ! -d "$dir/.progress" ]; then return; fi
    femurseg phantom -o "$dir" --resume --workers "${WORKERS:-1}" "$@"
}
mk "$out/test" --n 10 --seed 3000 $held
mk "$out/tf_headtops" --n 3 --seed 3100 --fov head_tops $held
mk "$out/tf_distal" --n 3 --seed 3200 --fov distal $held
mk "$out/tf_legs" --n 2 --seed 3300 --fov legs $held
mk "$out/tf_knee" --n 2 --seed 3400 --fov knee $held
mk "$out/vf_distal" --n 5 --seed 1600 --fov distal $train
mk "$out/vf_distal2" --n 6 --seed 1650 --fov distal $train
mk "$out/vf_cut" --n 4 --seed 1750 --fov cut $train
mk "$out/vf_legs" --n 3 --seed 1700 --fov legs $train
mk "$out/vf_headtops" --n 3 --seed 1800 --fov head_tops $train
mk "$out/vf_full" --n 3 --seed 1900 --fov full $train
mk "$out/vf_mixed" --n 8 --seed 1950 $train
femurseg dataset merge --overwrite -o "$out/testfov" \
    "$out/tf_headtops" "$out/tf_distal" "$out/tf_legs" "$out/tf_knee"
femurseg dataset merge --overwrite -o "$out/valall" "$out/vf_full" "$out/vf_cut" \
    "$out/vf_distal" "$out/vf_distal2" "$out/vf_legs" "$out/vf_headtops" "$out/vf_mixed"
echo "score with: femurseg scorecard -o OUT --phantoms $out/valall --split all --no-surface"
