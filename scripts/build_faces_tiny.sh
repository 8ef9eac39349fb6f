#!/usr/bin/env bash
# Rebuild the shipped bundle src/unif2ace/weights/faces-tiny from nothing (README "The shipped model").
# Every step is seeded; synth, annotate, caption and the trainings resume where an interrupted run stopped.
# Default: v1 (quick + extend) -> v2 (more faces) -> v4 (4,000 faces, the 2^13-code tokenizer, v2 moved onto it).
#   RECIPE=train_faces_tiny scripts/build_faces_tiny.sh     # the full 9,000-step recipe instead of quick + extend + v2 + v4
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE="${RECIPE:-train_faces_tiny_quick}"
OUT="${OUT:-src/unif2ace/weights/faces-tiny}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # one thread is faster on a CPU shared with other jobs

unif2ace data synth --n 1000 --size 128 --seed 1 --out data/faces
unif2ace data annotate data/faces/records.jsonl
unif2ace data caption data/faces/records.jsonl --seed 0
RESUME=""; ls -d runs/vq64/checkpoints/step-* >/dev/null 2>&1 && RESUME="--resume"
unif2ace vq train --config vq_faces_64 --data data/faces/images --out runs/vq64 $RESUME \
    train.max_steps=1200 train.lr=5.0e-4 train.ema_decay=0.995 loss.adversarial_start=100000 train.num_threads=1 \
    model.quantizer.codebook_entropy=bitwise   # faces-tiny v1 predates the joint entropy of the recipe
unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64 --out data/faces/tokens64
mkdir -p data/faces/features
unif2ace data features --kind face --records data/faces/records.jsonl --out data/faces/features/face.safetensors
unif2ace data features --kind clip --records data/faces/records.jsonl --out data/faces/features/clip.safetensors
unif2ace train --config "$RECIPE" --out "runs/${RECIPE}"
LAST=$(ls -d "runs/${RECIPE}"/checkpoints/step-* | sort | tail -1)
if [ "$RECIPE" = train_faces_tiny_quick ]; then   # v1: 3,000 more steps from the quick run's last checkpoint
    unif2ace train --config train_faces_tiny_extend --out runs/train_faces_tiny_extend --init-from "$LAST"
    LAST=$(ls -d runs/train_faces_tiny_extend/checkpoints/step-* | sort | tail -1)
    # v2: 1,000 faces more (the first 1,000 and their splits unchanged), then 1,000 steps from the v1 bundle
    unif2ace export "$LAST" --vq runs/vq64 --out runs/faces-tiny-v1 --ema --storage-dtype float16
    unif2ace data synth --n 2000 --size 128 --seed 1 --out data/faces
    unif2ace data annotate data/faces/records.jsonl
    unif2ace data caption data/faces/records.jsonl --seed 0
    unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64 --out data/faces/tokens64_2k
    mkdir -p data/faces/features2k
    unif2ace data features --kind face --records data/faces/records.jsonl --out data/faces/features2k/face.safetensors
    unif2ace data features --kind clip --records data/faces/records.jsonl --out data/faces/features2k/clip.safetensors
    unif2ace train --config train_faces_tiny_v2 --out runs/train_faces_tiny_v2 --init-from runs/faces-tiny-v1 \
        data.text_tokenizer=runs/faces-tiny-v1/tokenizer/tokenizer.json
    LAST=$(ls -d runs/train_faces_tiny_v2/checkpoints/step-* | sort | tail -1)
    # v4: 4,000 faces (the first 2,000 unchanged), the two-stage 2^13-code tokenizer, v2 moved onto its codes
    unif2ace export "$LAST" --vq runs/vq64 --out runs/faces-tiny-v2 --ema --storage-dtype float16
    unif2ace data synth --n 4000 --size 128 --seed 1 --out data/faces --workers 2
    unif2ace data annotate data/faces/records.jsonl
    unif2ace data caption data/faces/records.jsonl --seed 0
    RESUME=""; ls -d runs/vq64_w48/checkpoints/step-* >/dev/null 2>&1 && RESUME="--resume"
    unif2ace vq train --config vq_faces_64_8k_w48 --data data/faces/images --out runs/vq64_w48 $RESUME
    RESUME="--init-from runs/vq64_w48"; ls -d runs/vq64_w48_l2/checkpoints/step-* >/dev/null 2>&1 && RESUME="--resume"
    unif2ace vq train --config vq_faces_64_8k_w48_l2 --data data/faces/images --out runs/vq64_w48_l2 $RESUME
    unif2ace vq encode data/faces/records.jsonl --tokenizer runs/vq64_w48_l2 --out data/faces/tokens64_8k
    unif2ace data features --kind face --records data/faces/records.jsonl --out data/faces/features/face.safetensors
    unif2ace data features --kind clip --records data/faces/records.jsonl --out data/faces/features/clip.safetensors
    unif2ace train --config train_faces_tiny_v4 --out runs/train_faces_tiny_v4 --init-from runs/faces-tiny-v2 \
        data.text_tokenizer=runs/faces-tiny-v2/tokenizer/tokenizer.json
    LAST=$(ls -d runs/train_faces_tiny_v4/checkpoints/step-* | sort | tail -1)
    VQ=runs/vq64_w48_l2
fi
unif2ace export "$LAST" --vq "${VQ:-runs/vq64}" --out "$OUT" --ema --storage-dtype float16
echo "bundle: $OUT"
