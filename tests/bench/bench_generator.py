"""Unit-HiFi-GAN generator speed on CPU: naive eager forward vs ``prepare_for_inference``.

    python tests/bench/bench_generator.py [--seconds S] [--threads T] [--repeats N] [--no-train]

Threads default to 1 (per-core figures; on a shared machine multi-threaded timings are dominated by
other processes' load). ``--threads 0`` keeps torch's default.

For each config (reference hubert100 x320 and cpc100 x160 sizes with F0 quantizer and speaker
LUT; the ``tiny`` preset when ``resyn_bench.systems.vocoder.config.PRESETS`` exists) one random-
weight generator synthesizes ``--seconds`` of audio from random units / F0 / speaker:

* naive    - the model as loaded: weight norm recomputed in every call, autograd on;
* prepared - the same weights after ``prepare_for_inference`` (weight norm folded, inference
             mode, in-place activations, channels-last 1 x k convolutions).

Printed: real-time factor (compute seconds per audio second, best of ``--repeats``; naive and
prepared are timed alternately, in alternating order), the speed-up of the best and of the
median times, and the maximum absolute difference of the waveforms. Then the prepared generator
in fp32 vs bf16 (``prepare_for_inference(precision="bf16")``, the ``-o precision=bf16`` option
of ``ckpt:DIR`` systems): wall and CPU-time RTF and the SNR of the bf16 waveform against fp32. Then one training step
(discriminator update + generator update, batch 4 x 8960 samples, MPD+MSD, LSGAN + feature
matching + 45 x mel L1, AdamW) when the discriminators/losses modules exist.

Reading the numbers: the prepared path runs the convolutions near the core's fp32 peak; most of
the naive path's extra time is memory management (autograd keeps every activation alive, so
large buffers are mapped afresh); with a tuned allocator (e.g. MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=4294967296) the naive path gets within ~10 % of the prepared one.
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

TRAIN_REPEATS = 1  # a reference-size step takes ~20 s on one core


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.12,
                    help="audio seconds per synthesis (rounded up to 0.08 s = one F0 code; default 5.12)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: per-core figures, stable on a shared machine; 0 = torch's default)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per variant (default 7)")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    return ap.parse_args(argv)


def reference_configs() -> dict[str, dict]:
    """Reference generator configs (docs/reference.md §5.1, VCTK multi-speaker, F0 quantizer)."""
    jb = {"input_emb_width": 1, "output_emb_width": 128, "levels": 1, "downs_t": [4], "strides_t": [2],
          "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3}
    base = dict(num_embeddings=100, embedding_dim=128, model_in_dim=384, upsample_initial_channel=512,
                resblock="1", resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                f0=True, multispkr="_", num_speakers=200,
                f0_quantizer={"f0_vq_params": {"l_bins": 20, "emb_width": 128, "mu": 0.99, "levels": 1},
                              "f0_encoder_params": dict(jb), "f0_decoder_params": dict(jb)})
    cfgs = {"hubert100 (ref, x320)": dict(base, upsample_rates=[5, 4, 4, 2, 2],
                                          upsample_kernel_sizes=[11, 8, 8, 4, 4], code_hop_size=320),
            "cpc100 (ref, x160)": dict(base, upsample_rates=[5, 4, 2, 2, 2],
                                       upsample_kernel_sizes=[11, 8, 4, 4, 4], code_hop_size=160)}
    try:
        from resyn_bench.systems.vocoder.config import PRESETS
    except ImportError:
        print("(no resyn_bench.systems.vocoder.config.PRESETS: tiny row skipped)")
    else:
        if "tiny" in PRESETS:
            cfgs["tiny preset"] = PRESETS["tiny"]().generator_config()
    return cfgs


def make_inputs(model, seconds: float, batch: int = 1, seed: int = 0):
    """Random units / normalised F0 / speaker ids for ``seconds`` of audio (whole F0 codes)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_codes = max(1, math.ceil(seconds * 16000 / 1280 - 1e-9))
    samples = n_codes * 1280
    hop = model.hop_length
    if samples % hop:
        raise ValueError(f"hop {hop} does not divide {samples}")
    kw = {"code": torch.randint(0, model.dict.num_embeddings, (batch, samples // hop), generator=g)}
    if model.f0:
        if model.quantizer is not None:
            kw["f0"] = torch.randn(batch, 1, n_codes * 16, generator=g)
        else:
            kw["f0_codes"] = torch.randint(0, model.f0_dict.num_embeddings, (batch, n_codes), generator=g)
    if model.uses_speaker:
        kw["spkr"] = torch.randint(0, model.spkr.num_embeddings, (batch, 1), generator=g)
    return kw, samples


def time_synthesis(cfg: dict, seconds: float, repeats: int):
    import torch

    from resyn_bench.systems.vocoder.generator import CodeGenerator, prepare_for_inference

    torch.manual_seed(0)
    naive = CodeGenerator(cfg).eval()
    prepared = prepare_for_inference(copy.deepcopy(naive))
    kw, samples = make_inputs(naive, seconds)
    y_naive = naive(**kw)  # warm-up (allocator, oneDNN primitives)
    y_fast = prepared(**kw)
    diff = float((y_naive.detach() - y_fast).abs().max())
    times = {"naive": [], "prepared": []}
    models = {"naive": naive, "prepared": prepared}
    for i in range(repeats):
        # alternate which variant goes first: neither inherits the other's warm memory every time
        for name in (("naive", "prepared") if i % 2 == 0 else ("prepared", "naive")):
            t0 = time.perf_counter()
            models[name](**kw)
            times[name].append(time.perf_counter() - t0)
    t_naive, t_fast = times["naive"], times["prepared"]
    audio = samples / 16000
    params = sum(p.numel() for p in naive.parameters()) / 1e6
    return dict(rtf_naive=min(t_naive) / audio, rtf_fast=min(t_fast) / audio,
                speedup=min(t_naive) / min(t_fast), speedup_median=statistics.median(t_naive) / statistics.median(t_fast),
                diff=diff, audio=audio, params=params)


def cpu_flags() -> str:
    """The CPU's bf16-relevant instruction sets (from /proc/cpuinfo), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(found) or "no AVX512-BF16/AMX"


def time_precision(cfg: dict, seconds: float, repeats: int):
    """fp32 vs bf16 prepared generators: best wall RTF, CPU RTF (process CPU seconds per audio
    second, all threads: what the run costs on a busy machine) and the SNR of bf16 against fp32."""
    import torch

    from resyn_bench.systems.vocoder.generator import CodeGenerator, prepare_for_inference

    torch.manual_seed(0)
    model = CodeGenerator(cfg).eval()
    variants = {"fp32": prepare_for_inference(copy.deepcopy(model)),
                "bf16": prepare_for_inference(copy.deepcopy(model), precision="bf16")}
    kw, samples = make_inputs(model, seconds)
    outs = {name: m(**kw) for name, m in variants.items()}   # warm-up
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for i in range(repeats):
        for name in (("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")):
            c0, t0 = time.process_time(), time.perf_counter()
            variants[name](**kw)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    ref, y = outs["fp32"].double(), outs["bf16"].double()
    snr = float(10 * torch.log10((ref ** 2).sum() / ((ref - y) ** 2).sum()))
    audio = samples / 16000
    return {name: (min(wall[name]) / audio, min(cpu[name]) / audio) for name in variants}, snr


def time_train_step(cfg: dict, width: float, repeats: int):
    """Seconds per D+G update at batch 4 x 8960 samples; None when H4's modules are absent."""
    try:
        from resyn_bench.systems.vocoder.discriminators import (
            MultiPeriodDiscriminator,
            MultiScaleDiscriminator,
        )
        from resyn_bench.systems.vocoder.losses import (
            discriminator_loss,
            feature_matching_loss,
            generator_adversarial_loss,
            mel_spectrogram,
        )
    except ImportError as exc:
        print(f"(training step skipped: {exc})")
        return None
    import torch

    from resyn_bench.systems.vocoder.generator import CodeGenerator

    torch.manual_seed(0)
    gen = CodeGenerator(cfg).train()
    mpd, msd = MultiPeriodDiscriminator(width=width), MultiScaleDiscriminator(width=width)
    opt_g = torch.optim.AdamW(gen.parameters(), 2e-4, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW([*mpd.parameters(), *msd.parameters()], 2e-4, betas=(0.8, 0.99))
    kw, samples = make_inputs(gen, 8960 / 16000, batch=4)
    # 8960 samples = 7 F0 codes exactly
    y = 0.3 * torch.randn(4, 1, samples)
    mel = mel_spectrogram(y)

    def step():
        y_hat = gen(**kw)
        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.0
        for d in (mpd, msd):
            r, f, _, _ = d(y, y_hat.detach())
            loss_d = loss_d + discriminator_loss(r, f)[0]
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        loss_g = 45.0 * torch.nn.functional.l1_loss(mel_spectrogram(y_hat), mel)
        for d in (mpd, msd):
            _, f, rf, ff = d(y, y_hat)
            loss_g = loss_g + generator_adversarial_loss(f)[0] + 2.0 * feature_matching_loss(rf, ff)
        loss_g.backward()
        opt_g.step()

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, CPU, {threads} threads (torch.get_num_threads), "
          f"best of {args.repeats} runs; RTF = compute s / audio s (lower is faster)")
    cfgs = reference_configs()
    hdr = (f"{'config':24s} {'params':>7s} {'audio s':>7s} {'RTF naive':>10s} {'RTF prepared':>13s} "
           f"{'speed-up':>9s} {'(medians)':>9s} {'max|diff|':>10s}")
    print(hdr)
    print("-" * len(hdr))
    for name, cfg in cfgs.items():
        r = time_synthesis(cfg, args.seconds, args.repeats)
        print(f"{name:24s} {r['params']:6.2f}M {r['audio']:7.2f} {r['rtf_naive']:10.4f} {r['rtf_fast']:13.4f} "
              f"{r['speedup']:8.2f}x {r['speedup_median']:8.2f}x {r['diff']:10.2e}")
    print(f"\nprecision (-o precision=bf16 of ckpt:DIR systems), {threads} threads, CPU: {cpu_flags()}; "
          "RTF wall = best of the runs, RTF CPU = process CPU seconds (all threads) per audio s:")
    hdr = (f"{'config':24s} {'RTF fp32 wall':>13s} {'bf16 wall':>10s} {'RTF fp32 CPU':>13s} "
           f"{'bf16 CPU':>9s} {'speed-up (CPU)':>15s} {'SNR bf16 vs fp32':>17s}")
    print(hdr)
    print("-" * len(hdr))
    for name, cfg in cfgs.items():
        r, snr = time_precision(cfg, args.seconds, args.repeats)
        print(f"{name:24s} {r['fp32'][0]:13.4f} {r['bf16'][0]:10.4f} {r['fp32'][1]:13.4f} "
              f"{r['bf16'][1]:9.4f} {r['fp32'][1] / r['bf16'][1]:14.2f}x {snr:14.1f} dB")
    if not args.no_train:
        print(f"\ntraining step (D update + G update), batch 4 x 8960 samples, AdamW, {threads} threads, "
              f"best of {TRAIN_REPEATS} after one warm-up step:")
        rows = [("hubert100 (ref, x320)", cfgs["hubert100 (ref, x320)"], 1.0)]
        if "tiny preset" in cfgs:
            rows.append(("tiny preset", cfgs["tiny preset"], float(cfgs["tiny preset"].get("discriminator_width", 1.0))))
        for name, cfg, width in rows:
            t = time_train_step(cfg, width, TRAIN_REPEATS)
            if t is None:
                break
            print(f"  {name:24s} discriminator width {width:<7g} {t:7.2f} s/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
