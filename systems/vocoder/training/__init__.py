"""Training loops: the unit HiFi-GAN vocoder (:func:`train_vocoder`) and the F0 VQ-VAE
(:func:`train_f0_quantizer`).

Both follow the reference recipe (docs/reference.md §3.4, §6): AdamW (lr 2e-4, betas 0.8/0.99,
weight decay 0.01), ExponentialLR 0.999 stepped once per epoch; the vocoder does a
discriminator step (MPD + MSD, LSGAN, on the detached generator output) and then a generator
step (adversarial + 2 x feature matching + 45 x mel L1).

What this adds to the reference:

* **Deterministic resume.** Every random crop is drawn from an RNG seeded by (seed, step, item),
  and the epoch order from (seed, epoch), so the data a step sees depends only on the step
  number - not on how often training was stopped. A resumed run loads the latest
  ``g_XXXXXXXX`` + ``do_XXXXXXXX`` pair (weights, both optimizers, both schedulers, RNG states)
  and its next step equals the uninterrupted run's (tested).
* **Held-out validation** (mel L1 on whole utterances, cropped to ``validation_max_seconds``) at
  step 0 and every ``validation_interval`` steps; ``train_log.jsonl`` gets one line per
  ``log_interval`` steps (losses, lr, seconds/step) and one per validation.
* **Recorded inputs.** ``config.json`` (reference keys + ours: unit source, F0 extractor and
  stats file, dataset, speaker map, seeds) is written beside the checkpoints; the speaker
  name -> id map also as ``speakers.json`` and the F0 statistics as ``f0_stats.json``.
* **DDP** through :mod:`resyn_bench.distributed` (torchrun env vars; nccl on GPU, gloo on CPU):
  the global batch is divided across ranks, a DistributedSampler splits each epoch, and only
  rank 0 writes files (with barriers around checkpoints).

Code map (``resyn_bench.systems.vocoder.training``):

* :mod:`.state`: errors, :class:`TrainResult`, seeding and RNG states, checkpoint steps and
  the output folder's files, the resume config check;
* :mod:`.schedule`: step-indexed batches, optimizers, per-epoch learning-rate decay;
* :mod:`.log`: ``train_log.jsonl`` (+ TensorBoard), log trimming on resume, best validation;
* :mod:`.inputs`: utterances, unit source, F0 statistics, speaker map, datasets;
* :mod:`.loop`: the shared :class:`~.loop.Trainer` loop (resume, intervals, DDP, Ctrl-C);
* :mod:`.vocoder_trainer` and :mod:`.f0_trainer`: the two trainers, peers over that loop.
"""
from resyn_bench.systems.vocoder.training.f0_trainer import F0QuantizerTrainer, train_f0_quantizer
from resyn_bench.systems.vocoder.training.inputs import (
    build_f0_data,
    build_vocoder_data,
    select_utterances,
)
from resyn_bench.systems.vocoder.training.log import best_validation, trim_log
from resyn_bench.systems.vocoder.training.loop import Trainer
from resyn_bench.systems.vocoder.training.state import (
    CONFIG_FILE,
    F0_STATS_FILE,
    LOG_FILE,
    SPEAKERS_FILE,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
    latest_step,
    mix_seed,
    remove_stale_temp_files,
)
from resyn_bench.systems.vocoder.training.vocoder_trainer import VocoderTrainer, train_vocoder

__all__ = ["CONFIG_FILE", "F0_STATS_FILE", "LOG_FILE", "SPEAKERS_FILE", "F0QuantizerTrainer",
           "TrainResult", "Trainer", "TrainingError", "TrainingInterrupted", "VocoderTrainer",
           "best_validation", "build_f0_data", "build_vocoder_data", "latest_step", "mix_seed",
           "remove_stale_temp_files", "select_utterances", "train_f0_quantizer", "train_vocoder",
           "trim_log"]
