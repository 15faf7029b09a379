"""The ``synthetic`` dataset: Harvard sentences spoken by several espeak-ng formant voices.

Not human speech. It exists for what needs many utterances offline (scale and speed checks,
plumbing tests): any number of utterances, built in about a second per 20. ASR, MOS-proxy and
speaker figures on it describe a formant synthesiser, not speech (a strong ASR cannot
understand these voices either); the ``demo`` dataset (:mod:`resyn_bench.demo_speech`) is the
real-speech corpus.

It is built offline with espeak-ng's C library, loaded through ctypes from the
``espeakng-loader`` wheel (no system package needed), resampled to 16 kHz and cached under
``<RESYN_BENCH_HOME>/synthetic/v2-n<N>/`` (N utterances, default 20)::

    manifest.tsv                     utt_id, speaker, path, text, sample_rate, duration_s
    SOURCE.md                        what this is and how it was made
    wavs/<speaker>/<utt_id>.wav      16 kHz mono 16-bit PCM

Utterance plan: 4 voices x 20 Harvard sentences (lists 1 and 2) per *take*; take 0 is each
voice's own setting, each later take shifts the speaking rate and pitch a little, so N
utterances are the first N of (take, sentence, voice) in that order: the default 20 are the
first 5 sentences read by every voice, 400 are 5 takes of all 20 sentences.

Reproducibility. espeak-ng keeps synthesis state in C statics that ``espeak_Terminate`` +
``espeak_Initialize`` do not reset (pitch flutter phase, gain control, echo buffer), so the same
sentence synthesised twice in one process gives slightly different samples. A build therefore
runs in a fresh child Python process that synthesises the fixed list of utterances in a fixed
order: every build, in any process, writes the same bytes (for a given espeak-ng library).

Caching. The corpus is written into a temporary sibling folder and renamed into place, so a
killed build never leaves half a corpus; builders are serialised with a file lock where the
platform has one, and a builder that loses a rename race discards its own copy.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resyn_bench.audio import Audio, resample, write_audio
from resyn_bench.core.atomic import write_text_atomic
from resyn_bench.errors import UserError
from resyn_bench.paths import resyn_bench_home

#: Bump when voices, sentences or processing change: a new version builds into a new folder.
SYNTH_VERSION = "v2"
#: Utterances of the default build; at most MAX_UTTERANCES.
DEFAULT_UTTERANCES = 20
MAX_UTTERANCES = 5000
#: Sample rate of the stored corpus.
SAMPLE_RATE = 16000
#: Manifest columns, the same as the corpora under shared/corpora.
MANIFEST_COLUMNS = ("utt_id", "speaker", "path", "text", "sample_rate", "duration_s")

INSTALL_HINT = "pip install 'espeakng-loader>=0.2.4'"


@dataclass(frozen=True)
class DemoVoice:
    speaker: str          # speaker label in the corpus
    voice: str            # espeak-ng voice name: language + "+" + variant
    rate: int             # words per minute (espeak default 175)
    pitch: int            # 0-100 (espeak default 50), relative to the variant's base pitch
    pitch_range: int      # 0-100 (espeak default 50)
    description: str


#: Four distinct voices: two accents x male/female variants, each with its own rate and pitch.
VOICES: tuple[DemoVoice, ...] = (
    DemoVoice("us_m3", "en-us+m3", 150, 40, 45, "American English, male variant m3"),
    DemoVoice("us_f3", "en-us+f3", 165, 60, 60, "American English, female variant f3"),
    DemoVoice("rp_m1", "en-gb-x-rp+m1", 140, 48, 55, "British English (RP), male variant m1"),
    DemoVoice("sc_f4", "en-gb-scotland+f4", 172, 55, 40, "Scottish English, female variant f4"),
)

#: Harvard sentences, lists 1 and 2 (IEEE Recommended Practice for Speech Quality
#: Measurements, 1969; public domain). Every speaker reads all of them (a parallel corpus).
SENTENCES: tuple[tuple[str, str], ...] = (
    ("h1_01", "The birch canoe slid on the smooth planks."),
    ("h1_02", "Glue the sheet to the dark blue background."),
    ("h1_03", "It's easy to tell the depth of a well."),
    ("h1_04", "These days a chicken leg is a rare dish."),
    ("h1_05", "Rice is often served in round bowls."),
    ("h1_06", "The juice of lemons makes fine punch."),
    ("h1_07", "The box was thrown beside the parked truck."),
    ("h1_08", "The hogs were fed chopped corn and garbage."),
    ("h1_09", "Four hours of steady work faced us."),
    ("h1_10", "A large size in stockings is hard to sell."),
    ("h2_01", "The boy was there when the sun rose."),
    ("h2_02", "A rod is used to catch pink salmon."),
    ("h2_03", "The source of the huge river is the clear spring."),
    ("h2_04", "Kick the ball straight and follow through."),
    ("h2_05", "Help the woman get back to her feet."),
    ("h2_06", "A pot of tea helps to pass the evening."),
    ("h2_07", "Smoky fires lack flame and heat."),
    ("h2_08", "The soft cushion broke the man's fall."),
    ("h2_09", "The salt breeze came across from the sea."),
    ("h2_10", "The girl at the booth sold fifty bonds."),
)


class DemoCorpusError(UserError, RuntimeError):
    """The synthetic corpus could not be built or read."""


class EspeakError(DemoCorpusError):
    """espeak-ng is missing, failed to load, or rejected a request."""


# --------------------------------------------------------------------------------------------
# espeak-ng through ctypes. The C library is process-global: one engine per process, created on
# first use, its callback kept referenced for the life of the process, terminated at exit.

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


def _library_paths() -> tuple[str, str]:
    """(shared library path, data folder) from espeakng-loader, or a clear EspeakError."""
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakError("the synthetic corpus is made with espeak-ng through the "
                          f"'espeakng-loader' package, which is not installed: {INSTALL_HINT}"
                          ) from None
    try:
        lib_path = str(espeakng_loader.get_library_path())
        data_path = str(espeakng_loader.get_data_path())
    except Exception as exc:  # a broken install
        raise EspeakError(f"espeakng-loader is installed but unusable ({exc}); reinstall it: "
                          f"{INSTALL_HINT}") from None
    if not os.path.isfile(lib_path) or not os.path.isdir(data_path):
        raise EspeakError(f"espeakng-loader points at a missing library or data folder "
                          f"({lib_path}, {data_path}); reinstall it: {INSTALL_HINT}")
    return lib_path, data_path


class _Engine:
    def __init__(self) -> None:
        lib_path, data_path = _library_paths()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EspeakError(f"cannot load the espeak-ng library {lib_path}: {exc}; "
                              f"reinstall it: {INSTALL_HINT}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                     ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
            self._seed.restype = None

        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                     _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data folder "
                              f"{data_path}; reinstall espeakng-loader: {INSTALL_HINT}")
        self.lib = lib
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"unknown").decode("ascii", "replace")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        # Keep the ctypes callback object alive as long as the library may call it.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        atexit.register(self._terminate)

    def _on_audio(self, wav, n, _events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def _terminate(self) -> None:
        with contextlib.suppress(Exception):
            self.lib.espeak_Terminate()

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int,
              seed: int | None) -> np.ndarray:
        lib = self.lib
        with self.lock:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"espeak-ng has no voice {voice!r} (names look like "
                                  "'en-us+f3' or 'en-gb-x-rp+m1')")
            for param, value in ((_RATE, rate), (_VOLUME, 100), (_PITCH, pitch),
                                 (_RANGE, pitch_range)):
                if lib.espeak_SetParameter(param, int(value), 0) != 0:
                    raise EspeakError(f"espeak_SetParameter({param}, {value}) failed")
            if seed is not None and self._seed is not None:
                self._seed(int(seed))
            data = text.encode("utf-8") + b"\0"
            self._chunks = []
            status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0,
                                      _CHARS_UTF8 | _ENDPAUSE, None, None)
            if status != 0:
                raise EspeakError(f"espeak_Synth failed with status {status} for {text!r}")
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise EspeakError(f"espeak-ng produced no audio for {text!r} with voice {voice!r}")
        return np.concatenate(chunks)


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def espeak_version() -> str:
    """Version string of the loaded espeak-ng library (loads it on first use)."""
    return _engine().version


def synthesize(text: str, voice: str = "en-us", *, rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, seed: int | None = 0) -> Audio:
    """Speak ``text`` with espeak-ng in this process; returns espeak's native rate (22050 Hz).

    Thread-safe. Not bit-reproducible across calls in one process (see the module docstring);
    the corpus build runs in a fresh process for that reason."""
    samples = _engine().synth(text, voice, rate, pitch, pitch_range, seed)
    return Audio((samples.astype(np.float32) / 32768.0), _engine().sample_rate)


# --------------------------------------------------------------------------------------------
# Building and caching the corpus


def check_utterances(utterances) -> int:
    """The number of utterances as an int in 1..MAX_UTTERANCES, or DemoCorpusError."""
    if (isinstance(utterances, bool) or not isinstance(utterances, int)
            or not 1 <= utterances <= MAX_UTTERANCES):
        raise DemoCorpusError(f"the synthetic dataset's utterances option must be an integer "
                              f"from 1 to {MAX_UTTERANCES} (e.g. -d utterances=400), got "
                              f"{utterances!r}")
    return int(utterances)


def synthetic_corpus_dir(home: str | Path | None = None,
                         utterances: int = DEFAULT_UTTERANCES) -> Path:
    """Where the synthetic corpus of ``utterances`` utterances lives (built or not):
    ``<home>/synthetic/<SYNTH_VERSION>-n<utterances>``."""
    base = Path(home).expanduser() if home is not None else resyn_bench_home()
    return base / "synthetic" / f"{SYNTH_VERSION}-n{check_utterances(utterances)}"


def _is_complete(folder: Path) -> bool:
    # The manifest is written last and the folder appears by an atomic rename, so a folder
    # with a manifest is a finished build.
    return (folder / "manifest.tsv").is_file()


def take_voice(voice: DemoVoice, take: int) -> DemoVoice:
    """``voice`` as read in take ``take``: take 0 unchanged; later takes alternate slower and
    faster by 8 wpm more each time (kept within 100-260 wpm) and shift the pitch by -10..+10."""
    if take == 0:
        return voice
    rate = voice.rate + 8 * take * (1 if take % 2 == 0 else -1)
    pitch = voice.pitch + (7 * take) % 21 - 10
    return DemoVoice(voice.speaker, voice.voice, min(260, max(100, rate)),
                     min(100, max(0, pitch)), voice.pitch_range,
                     f"{voice.description}, take {take}")


def utterance_plan(utterances: int = DEFAULT_UTTERANCES) -> list[tuple[str, DemoVoice, str]]:
    """(utt_id, voice for this take, text) of the first ``utterances`` of (take, sentence,
    voice), listed by speaker (manifest order)."""
    n = check_utterances(utterances)
    chosen = []
    for k in range(n):
        take, rest = divmod(k, len(SENTENCES) * len(VOICES))
        s_index, v_index = divmod(rest, len(VOICES))
        chosen.append((v_index, take, s_index))
    plan = []
    for v_index, take, s_index in sorted(chosen):
        voice = VOICES[v_index]
        sid, text = SENTENCES[s_index]
        utt_id = f"{voice.speaker}_{sid}" + (f"_t{take}" if take else "")
        plan.append((utt_id, take_voice(voice, take), text))
    return plan


def _write_corpus(dest: Path, utterances: int = DEFAULT_UTTERANCES) -> None:
    """Synthesise every utterance into ``dest`` (runs in the builder child process)."""
    engine = _engine()
    rows = []
    for utt_id, voice, text in utterance_plan(utterances):
        raw = engine.synth(text, voice.voice, voice.rate, voice.pitch, voice.pitch_range, seed=0)
        x = resample(raw.astype(np.float32) / 32768.0, engine.sample_rate, SAMPLE_RATE)
        rel = f"wavs/{voice.speaker}/{utt_id}.wav"
        write_audio(dest / rel, Audio(np.asarray(x, dtype=np.float32), SAMPLE_RATE))
        duration = len(x) / SAMPLE_RATE
        rows.append((utt_id, voice.speaker, rel, text, str(SAMPLE_RATE),
                     format(round(duration, 3), "g")))
    voices = "\n".join(f"| {v.speaker} | `{v.voice}` | {v.rate} | {v.pitch} | {v.pitch_range} | "
                       f"{v.description} |" for v in VOICES)
    source = (
        f"# resyn-bench synthetic corpus {SYNTH_VERSION}, {len(rows)} utterances\n\n"
        "Synthetic speech made by espeak-ng (formant synthesis) through the espeakng-loader "
        f"wheel, espeak-ng {engine.version}; built by `resyn_bench.demo_corpus`.\n\n"
        f"- {len(VOICES)} voices, {len(rows)} utterances (the first {len(rows)} of take x "
        f"{len(SENTENCES)} sentences x voice), "
        f"{SAMPLE_RATE} Hz mono 16-bit PCM WAV (resampled with soxr HQ from espeak's "
        f"{engine.sample_rate} Hz). Takes after the first shift rate and pitch (ids end in "
        "_t<take>).\n"
        "- Text: Harvard sentences, lists 1 and 2 (IEEE 1969, public domain).\n"
        "- Not human speech: use it for plumbing checks, scale tests and relative "
        "comparisons only; ASR, MOS-proxy and speaker figures on it are not meaningful.\n\n"
        "Base voices (take 0):\n\n"
        "| speaker | espeak voice | rate (wpm) | pitch | range | description |\n"
        "|---|---|---|---|---|---|\n" + voices + "\n")
    (dest / "SOURCE.md").write_text(source, encoding="utf-8")
    write_text_atomic(dest / "manifest.tsv",
                      "".join("\t".join(row) + "\n" for row in [MANIFEST_COLUMNS, *rows]))


def _child_main(argv: list[str]) -> int:
    try:
        _write_corpus(Path(argv[0]), int(argv[1]) if len(argv) > 1 else DEFAULT_UTTERANCES)
    except DemoCorpusError as exc:
        print(f"DemoCorpusError: {exc}", file=sys.stderr)
        return 3
    return 0


def _run_builder(dest: Path, timeout: float = 600.0,
                 utterances: int = DEFAULT_UTTERANCES) -> None:
    _library_paths()  # fail early, with the install hint, if espeakng-loader is missing
    package_parent = str(Path(__file__).resolve().parents[1])
    # append, never prepend: site-packages may hold a stray stdlib shadow (resemblyzer pulls
    # the obsolete `typing` backport), which must stay behind the standard library
    code = ("import sys; sys.path.append(sys.argv[1]); "
            "from resyn_bench.demo_corpus import _child_main; "
            "sys.exit(_child_main(sys.argv[2:]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, package_parent, str(dest),
                               str(utterances)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DemoCorpusError(f"building the synthetic corpus took over {timeout:.0f} s"
                              ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
        message = "\n".join(tail) or f"exit status {proc.returncode}"
        if proc.returncode == 3 and tail:
            message = tail[-1].removeprefix("DemoCorpusError: ")
            raise EspeakError(message)
        raise DemoCorpusError(f"the synthetic corpus builder failed:\n{message}")
    if not _is_complete(dest):
        raise DemoCorpusError(f"the synthetic corpus builder wrote no manifest into {dest}")


@contextlib.contextmanager
def _build_lock(path: Path):
    """Exclusive lock on ``path`` where fcntl exists; yields True when the lock is held."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): rely on the atomic rename alone
        yield False
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError:  # file system without locks
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _discard(folder: Path) -> None:
    """Remove a folder, renaming it out of the way first so its name is free at once."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def ensure_synthetic_corpus(home: str | Path | None = None,
                            utterances: int = DEFAULT_UTTERANCES) -> Path:
    """Build the synthetic corpus of ``utterances`` utterances if it is not cached yet; return
    its folder (with manifest.tsv).

    ``home`` defaults to :func:`resyn_bench.paths.resyn_bench_home`. A cached corpus is
    returned at once without touching espeak-ng."""
    target = synthetic_corpus_dir(home, utterances)
    if _is_complete(target):
        return target
    name = target.name
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(parent / f".{name}.lock") as locked:
        if _is_complete(target):  # another process built it while we waited
            return target
        if locked:
            # Only builders holding the lock write here, so leftovers are from killed builds.
            for stale in parent.glob(f".{name}.build-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # a folder without manifest: not one of our builds; replace
                _discard(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=parent))
        try:
            # about 0.05 s per utterance; generous for slow or busy machines
            _run_builder(tmp, timeout=max(600.0, 1.0 * utterances), utterances=utterances)
            os.chmod(tmp, 0o755)  # mkdtemp made it private; the corpus is ordinary data
            try:
                os.rename(tmp, target)
            except OSError:
                if not _is_complete(target):  # not a lost race: a real problem
                    raise
                # lost the race to a concurrent builder: keep theirs, ours is discarded below
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(target):
        raise DemoCorpusError(f"the synthetic corpus at {target} is incomplete after building")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m resyn_bench.demo_corpus [HOME [N]]``: build (if needed) the synthetic corpus
    of N utterances (default 20) and print its folder."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        n = int(argv[1]) if len(argv) > 1 else DEFAULT_UTTERANCES
        folder = ensure_synthetic_corpus(argv[0] if argv else None, n)
    except (DemoCorpusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
