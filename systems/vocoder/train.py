"""Vocoder and F0-quantizer training: the public entry points, at the path the CLI and users
import them from. The code lives in :mod:`resyn_bench.systems.vocoder.training` (state,
schedule, log, inputs, the shared loop, and the two trainers as peers over it)."""
from resyn_bench.systems.vocoder.training import (
    CONFIG_FILE,
    F0_STATS_FILE,
    LOG_FILE,
    SPEAKERS_FILE,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
    best_validation,
    build_f0_data,
    build_vocoder_data,
    latest_step,
    mix_seed,
    remove_stale_temp_files,
    select_utterances,
    train_f0_quantizer,
    train_vocoder,
    trim_log,
)

__all__ = ["CONFIG_FILE", "F0_STATS_FILE", "LOG_FILE", "SPEAKERS_FILE", "TrainResult",
           "TrainingError", "TrainingInterrupted", "best_validation", "build_f0_data",
           "build_vocoder_data", "latest_step", "mix_seed", "remove_stale_temp_files",
           "select_utterances", "train_f0_quantizer", "train_vocoder", "trim_log"]
