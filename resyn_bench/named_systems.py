"""The named unit-to-speech systems, one table: (encoder, layer, quantizer, vocabulary, vocoder).

A name like ``hubert100-vctk`` says which dense features are quantized into units, by which
k-means, and which unit HiFi-GAN turns them back into speech. Pretrained parts come from the
checkpoint catalogue (``resyn-bench fetch``); vocoders that no one has published (the paper's
LJ/VCTK models were never released) are trained locally with ``resyn-bench train vocoder`` into
``$RESYN_BENCH_HOME/vocoders/<name>/`` (or any folder given with ``-o checkpoint=DIR``).

Pure data: importing this module imports no torch, so ``resyn-bench ls systems`` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resyn_bench.core.bitrate import F0_CODE_RATE, F0_CODE_VOCAB, bitrate_bps

F0_CODEBOOK = F0_CODE_VOCAB      # 12.5 Hz (one F0 code per 16 F0 frames of 80 samples), K'=20


@dataclass(frozen=True)
class NamedSystem:
    name: str
    encoder: str                 # dense features: hubert | cpc | logmel | vqvae (learned jointly)
    layer: int | None            # encoder layer the units come from
    quantizer: str               # catalogue name of the k-means, "local:<file>", or "vq" (jointly learned)
    vocab_size: int
    hop_size: int                # samples per unit at 16 kHz
    vocoder: str                 # catalogue name of a published vocoder, or "train:<preset>"
    f0: bool                     # F0 codes transmitted
    speaker: str                 # "lut" | "none"
    dataset: str                 # what the vocoder is (to be) trained on
    description: str
    #: catalogue name of the dense model (default: the encoder family's: HuBERT Base, CPC big)
    dense: str | None = None

    @property
    def unit_rate(self) -> float:
        return 16000 / self.hop_size

    def streams(self) -> list[dict]:
        """The streams the system transmits (as a run manifest records them): units, F0 codes
        when it has them, the speaker LUT row when it has one."""
        out = [{"name": "units", "kind": "discrete", "frame_rate": self.unit_rate,
                "vocab_size": self.vocab_size}]
        if self.f0:
            out.append({"name": "f0_codes", "kind": "discrete", "frame_rate": F0_CODE_RATE,
                        "vocab_size": F0_CODE_VOCAB})
        if self.speaker != "none":
            out.append({"name": "speaker", "kind": "speaker", "frame_rate": None,
                        "vocab_size": None})
        return out

    def bitrate(self) -> float:
        """Bits per second of the transmitted discrete streams (units + F0 codes; the speaker
        identity is sent once and not counted, as in the paper's codec comparison): the one
        formula, :func:`resyn_bench.core.bitrate.bitrate_bps`."""
        return bitrate_bps(self.streams())

    @property
    def trained_locally(self) -> bool:
        return self.vocoder.startswith("train:")

    @property
    def preset(self) -> str | None:
        return self.vocoder.partition(":")[2] if self.trained_locally else None

    def checkpoint_dir(self) -> Path:
        """Where a locally trained vocoder for this system is looked for by default."""
        from resyn_bench.paths import resyn_bench_home

        return resyn_bench_home() / "vocoders" / self.name

    def vqvae_dir(self) -> Path:
        """Where the jointly trained content VQ-VAE (raw-audio encoder + 256 codes) is looked for."""
        from resyn_bench.paths import resyn_bench_home

        return resyn_bench_home() / "vqvae" / f"vqvae{self.vocab_size}"

    def unit_spec(self) -> str | None:
        """The unit-encoder spec given to ``load_unit_encoder`` (None: the vocoder's own)."""
        if self.quantizer == "vq":   # the content VQ-VAE's own encoder + codebook
            return f"vqvae:{self.vqvae_dir()}"
        if self.quantizer.startswith("local:"):
            from resyn_bench.paths import resyn_bench_home

            return str(resyn_bench_home() / "kmeans" / self.quantizer.partition(":")[2])
        return self.quantizer

    def train_hint(self) -> str:
        """The commands still needed to train this system locally, in order. Parts already on
        disk (the k-means file, an F0 quantizer or content VQ-VAE folder with a checkpoint) are
        not asked for again; they are named as found, and the later steps use them."""
        data = {"lj": "--dataset ljspeech --data-root LJSpeech-1.1",
                "vctk": "--dataset vctk --data-root VCTK-Corpus-0.92"}.get(self.dataset,
                                                                         "--dataset D --data-root R")
        steps, found = [], []
        if self.quantizer == "vq":
            if _has_checkpoint(self.vqvae_dir()):
                found.append(f"content VQ-VAE {self.vqvae_dir()}")
            else:
                steps.append(f"resyn-bench train vocoder --config vqvae{self.vocab_size}-librilight "
                             f"{data} --out {self.vqvae_dir()}  (the content VQ-VAE, trained jointly "
                             "with its own decoder)")
        if self.quantizer.startswith("local:"):
            if Path(self.unit_spec()).is_file():
                found.append(f"k-means {self.unit_spec()}")
            else:
                steps.append(f"resyn-bench train kmeans --encoder {self.encoder} --k {self.vocab_size} "
                             f"{data} --out {self.unit_spec()}")
        f0_dir = self.checkpoint_dir().parent / f"{self.name}-f0"
        f0_arg = ""
        if self.f0:
            if _has_checkpoint(f0_dir):
                found.append(f"F0 quantizer {f0_dir}")
            else:
                f0_preset = "tiny-f0" if self.preset == "tiny" else f"f0-vqvae-{self.dataset}"
                steps.append(f"resyn-bench train f0-quantizer --config {f0_preset} {data} --out {f0_dir}")
            f0_arg = f" --f0-quantizer {f0_dir}"
        units = f" --units {self.unit_spec()}"
        steps.append(f"resyn-bench train vocoder --config {self.preset} {data}{units}{f0_arg} "
                     f"--out {self.checkpoint_dir()}")
        hint = "; then ".join(steps)
        return f"{hint} (already there: {', '.join(found)})" if found else hint

    def status(self) -> str:
        """What is missing before the system can run (no torch; path checks only)."""
        from resyn_bench import catalogue

        missing = []
        spec = self.unit_spec()
        if self.quantizer == "vq":
            folder = self.vqvae_dir()
            if not (folder.is_dir() and any(folder.glob("g_*"))):
                missing.append(f"train vocoder --config vqvae{self.vocab_size}-librilight "
                               "(content VQ-VAE)")
        elif spec and self.quantizer.startswith("local:"):
            if not Path(spec).is_file():
                missing.append(f"k-means {spec} (train kmeans)")
        elif spec:
            km = catalogue.resolve_name(spec)
            # a km.bin converted once to the safe .npz may be all that is left
            if not catalogue.is_present(km) and not catalogue.catalogue_path(km).with_suffix(".npz").is_file():
                missing.append(f"fetch {km}")
            dense = self.dense or {"hubert": "hubert-base-ls960",
                                   "cpc": "cpc-big-ll6kh"}.get(self.encoder)
            if dense and not catalogue.is_present(dense):
                missing.append(f"fetch {dense}")
        if self.trained_locally:
            folder = self.checkpoint_dir()
            if not (folder.is_dir() and any(folder.glob("g_*"))):
                missing.append(f"train vocoder --config {self.preset}")
        else:
            # the generator and the files fetched with it (config, speakers, styles)
            for name in (self.vocoder, *catalogue.get_entry(self.vocoder).requires):
                if not catalogue.is_present(name):
                    missing.append(f"fetch {name}")
        return "ready" if not missing else "needs: " + "; ".join(dict.fromkeys(missing))


def _has_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("g_*"))


def _paper(encoder: str, layer: int | None, km: str, vocab: int, hop: int) -> list[NamedSystem]:
    base = f"{encoder}{vocab}" if encoder != "vqvae" else f"vqvae{vocab}"
    out = []
    for ds, label in (("lj", "LJ Speech"), ("vctk", "VCTK")):
        out.append(NamedSystem(
            name=f"{base}-{ds}", encoder=encoder, layer=layer, quantizer=km, vocab_size=vocab,
            hop_size=hop, vocoder=f"train:{base}-{ds}", f0=True, speaker="lut", dataset=ds,
            description=f"the paper's {base} system: {encoder.upper()} units "
                        f"({vocab}, {16000 // hop} Hz) + F0 codes + speaker LUT, vocoder trained on {label}"))
    return out


NAMED_SYSTEMS: dict[str, NamedSystem] = {s.name: s for s in [
    *_paper("hubert", 6, "hubert-l6-km100", 100, 320),
    *_paper("cpc", 2, "cpc-km100", 100, 160),
    *_paper("vqvae", None, "vq", 256, 160),
    NamedSystem("logmel100", "logmel", None, "local:logmel100.npz", 100, 160, "train:tiny",
                True, "lut", "any",
                "offline system: 80-band log-mel + local k-means (100) + F0 codes + speaker LUT; "
                "every part trained here, no downloads"),
    NamedSystem("hubert100-lj-pretrained", "hubert", 6, "hubert-l6-km100", 100, 320,
                "vocoder-hubert100-lj", False, "none", "lj",
                "HuBERT Base L6 + GSLM km100 + the public fairseq unit HiFi-GAN (duration "
                "predictor, no F0, LJ voice)"),
    # public weights only: textlesslib's Expresso release, fairseq's textless S2ST vocoders
    NamedSystem("expresso-hubert500", "hubert", 9, "hubert-l9-km500", 500, 320,
                "vocoder-expresso-hubert-l9-km500", False, "lut", "expresso+lj+vctk",
                "HuBERT Base L9 + km500 + the public Expresso unit HiFi-GAN "
                "(hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500): speaker LUT over the "
                "Expresso, LJ Speech and VCTK voices (voice conversion: -o speaker=NAME or "
                "--vc-targets) and a style LUT (-o style=NAME, default read-default)"),
    *[NamedSystem(f"mhubert1000-{tag}", "hubert", 11, "mhubert-l11-km1000", 1000, 320,
                  f"vocoder-mhubert1000-{tag}", False, "none", data,
                  f"mHuBERT Base L11 + km1000 + fairseq's public unit HiFi-GAN (duration "
                  f"predictor, no F0, one {voice} voice)", dense="mhubert-base-vp-en-es-fr")
      for tag, data, voice in (("en-lj", "lj", "English LJ Speech"),
                               ("es-css10", "css10-es", "Spanish CSS10"),
                               ("fr-css10", "css10-fr", "French CSS10"))],
]}

#: the bare paper names stand for the multi-speaker (VCTK) variants
ALIASES = {"hubert100": "hubert100-vctk", "cpc100": "cpc100-vctk", "vqvae256": "vqvae256-vctk",
           # the release's own name
           "hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500": "expresso-hubert500"}


def get_named_system(name: str) -> NamedSystem:
    return NAMED_SYSTEMS[ALIASES.get(name, name)]
