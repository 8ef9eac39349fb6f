#!/usr/bin/env bash
# Rebuild the shipped bundle src/unif2ace/weights/faces-tiny from nothing (README "The shipped model").
# Every step is seeded; synth, annotate, caption and the trainings resume where an interrupted run stopped, so
# the chain can be spread over several sessions (re-run the script).
# Default: the shipped v4's chain: 1,000 -> 2,000 -> 4,000 faces; the 2^10-code tokenizer (first 1,000 faces) and the
# two-stage 2^13-code tokenizer (all faces) side by side on one core each; v1 on the 2^10 codes of the first 1,000
# faces, v2 on the first 2,000, v2 moved onto the 2^13 codes of all faces (v4). Run one after the other these steps
# took ~7.8 h of a 2-core CPU; side by side 4.7 h measured (docs/faces_tiny.md).
#   CHAIN=8k scripts/build_faces_tiny.sh   # 4,000 faces -> 2^13-code tokenizer -> train_faces_tiny_8k from nothing
#                                          # -> train_faces_tiny_8k_extend -> _extend2 (~5.9 h; prompts followed less
#                                          # than v4, docs/faces_tiny.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CHAIN="${CHAIN:-v4}"
DEFAULT_OUT=src/unif2ace/weights/faces-tiny; [ "$CHAIN" = 8k ] && DEFAULT_OUT=runs/faces-tiny-8k-extend2  # not shipped
OUT="${OUT:-$DEFAULT_OUT}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # one thread is faster on a CPU shared with other jobs
TRAIN_THREADS="${TRAIN_THREADS:-2}"              # train_model: the 2^13-code trainings were timed on 2 threads

features() {   # the face-identity and semantic feature caches of every record
    mkdir -p "$1"
    unif2ace data features --kind face --records data/faces/records.jsonl --out "$1/face.safetensors"
    unif2ace data features --kind clip --records data/faces/records.jsonl --out "$1/clip.safetensors"
}
corpus() {     # N faces (earlier ones and their splits unchanged), annotated and captioned
    unif2ace data synth --n "$1" --size 128 --seed 1 --out data/faces --workers 2
    unif2ace data annotate data/faces/records.jsonl
    unif2ace data caption data/faces/records.jsonl --seed 0
}
tokenizer_8k() {   # vq_faces_64_8k_w48, then its second (L2) stage from it
    local resume=""; ls -d runs/vq64_w48/checkpoints/step-* >/dev/null 2>&1 && resume="--resume"
    unif2ace vq train --config vq_faces_64_8k_w48 --data data/faces/images --out runs/vq64_w48 $resume
    resume="--init-from runs/vq64_w48"; ls -d runs/vq64_w48_l2/checkpoints/step-* >/dev/null 2>&1 && resume="--resume"
    unif2ace vq train --config vq_faces_64_8k_w48_l2 --data data/faces/images --out runs/vq64_w48_l2 $resume
    unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64_w48_l2 --out data/faces/tokens64_8k
}
last() { ls -d "$1"/checkpoints/step-* | sort | tail -1; }
train_model() { OMP_NUM_THREADS=$TRAIN_THREADS unif2ace train "$@"; }   # the 2^13-code model trainings

if [ "$CHAIN" = 8k ]; then
    corpus 4000
    tokenizer_8k
    features data/faces/features
    train_model --config train_faces_tiny_8k --out runs/train_faces_tiny_8k
    train_model --config train_faces_tiny_8k_extend \
        --out runs/train_faces_tiny_8k_extend \
        --init-from "$(last runs/train_faces_tiny_8k)" \
        data.text_tokenizer=runs/train_faces_tiny_8k/tokenizer/tokenizer.json
    train_model --config train_faces_tiny_8k_extend2 \
        --out runs/train_faces_tiny_8k_extend2 \
        --init-from "$(last runs/train_faces_tiny_8k_extend)" \
        data.text_tokenizer=runs/train_faces_tiny_8k/tokenizer/tokenizer.json
    LAST=$(last runs/train_faces_tiny_8k_extend2); VQ=runs/vq64_w48_l2
elif [ "$CHAIN" = v4 ]; then
    # The corpus grows as v1 / v2 / v4 saw it (1,000 -> 2,000 -> 4,000 faces, earlier faces and splits unchanged),
    # all of it first, so that the two tokenizers train side by side, one core each; v1 and v2 read the first
    # 1,000 / 2,000 records (data.first_records), which are the faces they had.
    corpus 1000
    corpus 2000
    corpus 4000
    head -n 1000 data/faces/records.jsonl > data/faces/records_first1000.jsonl
    mkdir -p runs/logs
    echo "2^13-code tokenizer in the background: runs/logs/tokenizer_8k.log"
    tokenizer_8k > runs/logs/tokenizer_8k.log 2>&1 &
    TOKENIZER_PID=$!
    trap 'kill "$TOKENIZER_PID" 2>/dev/null || true' EXIT
    # meanwhile, on the other core: the 2^10-code tokenizer on the first 1,000 faces, the caches, v1
    RESUME=""; ls -d runs/vq64/checkpoints/step-* >/dev/null 2>&1 && RESUME="--resume"
    unif2ace vq train --config vq_faces_64 --data data/faces/records_first1000.jsonl --out runs/vq64 $RESUME \
        train.max_steps=1200 train.lr=5.0e-4 train.ema_decay=0.995 loss.adversarial_start=100000 train.num_threads=1 \
        model.quantizer.codebook_entropy=bitwise   # faces-tiny v1 predates the joint entropy of the recipe
    unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64 --out data/faces/tokens64
    features data/faces/features
    # v1: 1,900 quick steps, then 3,000 more from its last checkpoint (one thread: the tokenizer has the other core)
    unif2ace train --config train_faces_tiny_quick --out runs/train_faces_tiny_quick data.first_records=1000
    unif2ace train --config train_faces_tiny_extend --out runs/train_faces_tiny_extend \
        --init-from "$(last runs/train_faces_tiny_quick)" data.first_records=1000
    unif2ace export "$(last runs/train_faces_tiny_extend)" --vq runs/vq64 --out runs/faces-tiny-v1 --ema \
        --storage-dtype float16
    wait "$TOKENIZER_PID"
    trap - EXIT
    # v2: 1,000 steps from the v1 bundle on the first 2,000 faces (both cores from here on)
    train_model --config train_faces_tiny_v2 --out runs/train_faces_tiny_v2 --init-from runs/faces-tiny-v1 \
        data.first_records=2000 data.tokens=data/faces/tokens64 \
        data.features.clip=data/faces/features/clip.safetensors data.features.face=data/faces/features/face.safetensors \
        data.text_tokenizer=runs/faces-tiny-v1/tokenizer/tokenizer.json
    unif2ace export "$(last runs/train_faces_tiny_v2)" --vq runs/vq64 --out runs/faces-tiny-v2 --ema \
        --storage-dtype float16
    # v4: all 4,000 faces on the 2^13 codes, v2 moved onto them
    train_model --config train_faces_tiny_v4 --out runs/train_faces_tiny_v4 \
        --init-from runs/faces-tiny-v2 \
        data.text_tokenizer=runs/faces-tiny-v2/tokenizer/tokenizer.json
    LAST=$(last runs/train_faces_tiny_v4); VQ=runs/vq64_w48_l2
else
    echo "CHAIN must be v4 or 8k, got '$CHAIN'" >&2; exit 2
fi
unif2ace export "$LAST" --vq "$VQ" --out "$OUT" --ema --storage-dtype float16
echo "bundle: $OUT"
