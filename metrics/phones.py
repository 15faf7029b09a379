"""Reference phone sequences from text, in the ARPAbet set of the CMU dictionary.

Words are looked up in the CMU pronouncing dictionary that ships inside the ``pocketsphinx``
wheel (``en-us/cmudict-en-us.dict``, the same lexicon pocketsphinx decodes with, so reference
phones and recognised phones share one phone set). Lookup rules:

* text is lower-cased, typographic apostrophes become ``'``, every character that is not a
  letter, digit or apostrophe separates words (so ``well-known`` is two words); apostrophes at
  a word's edges are dropped unless the dictionary has the word with them (``'em``);
* the first pronunciation wins (``word`` before ``word(2)``);
* stress digits are removed (the pocketsphinx copy is already stress-free; a stressed copy of
  cmudict given through ``dict_path`` works the same).

Words missing from the dictionary (OOV) go through grapheme-to-phoneme conversion with
phonemizer's espeak-ng backend (en-us, no stress) using the library and data shipped in the
``espeakng-loader`` wheel when it is installed (a system espeak-ng otherwise). espeak's IPA is
mapped to ARPAbet with :data:`IPA_TO_ARPABET` (longest match first inside each espeak phoneme;
length marks, stress marks, tie bars and other diacritics are dropped; a syllabic consonant
``n̩`` becomes ``AH N`` as cmudict writes "button"). IPA symbols the table does not know are
dropped and reported (:attr:`PhoneConversion.unmapped`). Without phonemizer the OOV words are
skipped and reported in :attr:`PhoneConversion.skipped`, never dropped silently.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: The 39 phones of cmudict / the pocketsphinx en-us model (no stress).
ARPABET = frozenset((
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH"))

#: espeak-ng IPA -> ARPAbet (our own table). Keys are matched longest first inside one
#: espeak phoneme after dropping diacritics/length marks; a value may be several phones.
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # diphthongs
    "aɪ": ("AY",), "aʊ": ("AW",), "ɔɪ": ("OY",), "eɪ": ("EY",), "oʊ": ("OW",), "əʊ": ("OW",),
    # centring diphthongs of non-rhotic accents, written as cmudict writes American English
    "ɪə": ("IH", "R"), "eə": ("EH", "R"), "ɛə": ("EH", "R"), "ʊə": ("UH", "R"),
    "iə": ("IY", "AH"),
    # r-coloured vowels
    "ɚ": ("ER",), "ɝ": ("ER",), "ɜ": ("ER",), "ɜɹ": ("ER",), "əɹ": ("ER",), "ɝɹ": ("ER",),
    # monophthongs
    "ə": ("AH",), "ʌ": ("AH",), "ɐ": ("AH",), "ɪ": ("IH",), "ᵻ": ("IH",), "ɨ": ("IH",),
    "i": ("IY",), "ɛ": ("EH",), "e": ("EH",), "æ": ("AE",), "a": ("AE",), "ɑ": ("AA",),
    "ɒ": ("AA",), "ɔ": ("AO",), "o": ("OW",), "ɵ": ("OW",), "ʊ": ("UH",), "u": ("UW",),
    "ʉ": ("UW",), "y": ("UW",), "ø": ("ER",), "œ": ("ER",), "ɯ": ("UW",),
    # affricates
    "tʃ": ("CH",), "dʒ": ("JH",), "ʧ": ("CH",), "ʤ": ("JH",),
    # plosives
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",),
    "g": ("G",), "c": ("K",), "q": ("K",), "ʔ": ("T",), "ɾ": ("T",),
    # fricatives
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",),
    "ʃ": ("SH",), "ʒ": ("ZH",), "h": ("HH",), "ɦ": ("HH",), "x": ("K",), "ç": ("HH",),
    "χ": ("K",), "ɣ": ("G",), "β": ("B",),
    # nasals, liquids, glides
    "m": ("M",), "n": ("N",), "ŋ": ("NG",), "ɲ": ("N", "Y"), "l": ("L",), "ɫ": ("L",),
    "ɬ": ("L",), "ɹ": ("R",), "r": ("R",), "ɻ": ("R",), "ʁ": ("R",), "ʀ": ("R",),
    "j": ("Y",), "w": ("W",), "ʍ": ("W",),
}
_KEYS_BY_LENGTH = sorted(IPA_TO_ARPABET, key=len, reverse=True)
_MAX_KEY = max(len(k) for k in IPA_TO_ARPABET)
#: spacing modifiers to drop (length, stress, aspiration, palatalisation, rhotic hook, ...)
_DROP = set("ːˑˈˌʰʲʷˠˤ˞ˀ'-.|_")
_SYLLABIC = ("\u0329", "\u030d")          # combining vertical line below / above

#: pocketsphinx's copy of cmudict (relative to ``pocketsphinx.get_model_path()``)
CMUDICT_SUBPATH = "en-us/cmudict-en-us.dict"
G2P_LANGUAGE = "en-us"

_WORD_SPLIT = re.compile(r"[^\w']+")


def normalise_words(text: str) -> list[str]:
    """Lower-case words with punctuation removed (apostrophes kept) - the lookup keys."""
    text = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    return [w for w in _WORD_SPLIT.split(text.replace("_", " ")) if w.strip("'")]


def ipa_to_arpabet(phoneme: str, unmapped: set[str] | None = None) -> list[str]:
    """One espeak phoneme (or any IPA string) -> ARPAbet phones.

    Unknown symbols are dropped and added to ``unmapped`` when given."""
    s = unicodedata.normalize("NFD", phoneme)
    # a syllabic consonant (n̩, l̩, m̩) is a reduced vowel + consonant, as in cmudict
    chars: list[str] = []
    for ch in s:
        if ch in _SYLLABIC and chars:
            chars.insert(len(chars) - 1, "ə")
        elif unicodedata.combining(ch) or ch in _DROP or ch.isspace():
            continue
        else:
            chars.append(ch)
    s = unicodedata.normalize("NFC", "".join(chars))
    out: list[str] = []
    i = 0
    while i < len(s):
        for n in range(min(_MAX_KEY, len(s) - i), 0, -1):
            piece = s[i:i + n]
            if piece in IPA_TO_ARPABET:
                out.extend(IPA_TO_ARPABET[piece])
                i += n
                break
        else:
            if unmapped is not None:
                unmapped.add(s[i])
            i += 1
    return out


def default_dict_path() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path(CMUDICT_SUBPATH))


#: ASCII digits removed by str.translate (stress marks); lines with other characters use re
_ASCII_DIGITS = str.maketrans("", "", "0123456789")


def load_cmudict(path: str | Path) -> dict[str, tuple[str, ...]]:
    """word -> first pronunciation, stress digits removed."""
    lexicon: dict[str, tuple[str, ...]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith(";;;"):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            word = parts[0].lower()
            paren = word.find("(")
            if paren > 0 and word.endswith(")"):
                word = word[:paren]
            if word in lexicon:            # an alternate pronunciation: the first one wins
                continue
            if line.isascii():             # the usual case, a few times faster than re per phone
                lexicon[word] = tuple(p.translate(_ASCII_DIGITS).upper() for p in parts[1:])
            else:
                lexicon[word] = tuple(re.sub(r"\d", "", p).upper() for p in parts[1:])
    return lexicon


class G2PUnavailable(RuntimeError):
    """phonemizer (or an espeak-ng library) is not installed."""


class EspeakG2P:
    """phonemizer's espeak backend (en-us), IPA mapped to ARPAbet; results memoised per word."""

    def __init__(self, language: str = G2P_LANGUAGE):
        self.language = language
        self._backend = None
        self._cache: dict[str, tuple[list[str], frozenset[str]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("phonemizer") is not None

    def _load(self):
        if self._backend is None:
            try:
                from phonemizer.backend import EspeakBackend
                from phonemizer.backend.espeak.wrapper import EspeakWrapper
            except ImportError as exc:
                raise G2PUnavailable(f"phonemizer is not installed ({exc}); "
                                     "pip install phonemizer espeakng-loader") from None
            try:
                import espeakng_loader
            except ImportError:
                espeakng_loader = None        # fall back to a system espeak-ng
            if espeakng_loader is not None:
                EspeakWrapper.set_library(espeakng_loader.get_library_path())
                EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
            try:
                self._backend = EspeakBackend(self.language, with_stress=False,
                                              preserve_punctuation=False,
                                              language_switch="remove-flags")
            except RuntimeError as exc:
                raise G2PUnavailable(f"espeak-ng backend unavailable: {exc}") from None
        return self._backend

    def words_to_phones(self, words: list[str]) -> dict[str, tuple[list[str], frozenset[str]]]:
        """word -> (ARPAbet phones, unmapped IPA symbols), one espeak call for the new words."""
        from phonemizer.separator import Separator

        with self._lock:
            todo = sorted({w for w in words if w not in self._cache})
            if todo:
                backend = self._load()
                ipa = backend.phonemize(todo, separator=Separator(phone=" ", word=" | ",
                                                                  syllable=""), strip=True)
                for word, pron in zip(todo, ipa, strict=True):
                    unmapped: set[str] = set()
                    phones = [p for tok in pron.replace("|", " ").split()
                              for p in ipa_to_arpabet(tok, unmapped)]
                    # espeak writes "hurry" as h ɜː ɹ i; cmudict has HH ER IY
                    phones = [p for i, p in enumerate(phones)
                              if not (p == "R" and i > 0 and phones[i - 1] == "ER")]
                    self._cache[word] = (phones, frozenset(unmapped))
            return {w: self._cache[w] for w in words}


@dataclass
class PhoneConversion:
    phones: list[str]
    #: words not in the dictionary (converted by G2P or skipped)
    oov_words: list[str] = field(default_factory=list)
    #: OOV words that could not be converted (no G2P available) - their phones are missing
    skipped: list[str] = field(default_factory=list)
    #: IPA symbols the G2P produced that IPA_TO_ARPABET does not map (dropped)
    unmapped: list[str] = field(default_factory=list)


class PhoneLexicon:
    """cmudict lookup with an espeak-ng G2P fallback for out-of-vocabulary words."""

    def __init__(self, dict_path: str | Path | None = None, g2p: bool = True):
        self.dict_path = Path(dict_path) if dict_path is not None else None
        self.use_g2p = g2p
        self._lexicon: dict[str, tuple[str, ...]] | None = None
        self._g2p = EspeakG2P() if g2p else None
        self._g2p_error: str | None = None
        self._lock = threading.Lock()

    @property
    def lexicon(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            if self._lexicon is None:
                self._lexicon = load_cmudict(self.dict_path or default_dict_path())
            return self._lexicon

    def lookup(self, word: str) -> tuple[str, ...] | None:
        lex = self.lexicon
        if word in lex:
            return lex[word]
        bare = word.strip("'")
        return lex.get(bare)

    def convert(self, text: str) -> PhoneConversion:
        words = normalise_words(text)
        prons = [self.lookup(w) for w in words]
        oov = [w.strip("'") for w, p in zip(words, prons, strict=True) if p is None]
        g2p: dict[str, tuple[list[str], frozenset[str]]] = {}
        if oov and self._g2p is not None and self._g2p_error is None:
            try:
                g2p = self._g2p.words_to_phones(oov)
            except G2PUnavailable as exc:
                self._g2p_error = str(exc)
        phones: list[str] = []
        skipped: list[str] = []
        unmapped: set[str] = set()
        for w, p in zip(words, prons, strict=True):
            if p is not None:
                phones.extend(p)
                continue
            w = w.strip("'")
            if w in g2p:
                phones.extend(g2p[w][0])
                unmapped |= g2p[w][1]
            else:
                skipped.append(w)
        return PhoneConversion(phones, oov, skipped, sorted(unmapped))

    @property
    def g2p_error(self) -> str | None:
        """Why the G2P fallback is off (None while it works or has not been needed)."""
        return self._g2p_error


@lru_cache(maxsize=1)
def default_lexicon() -> PhoneLexicon:
    return PhoneLexicon()


def text_to_phones(text: str) -> tuple[list[str], list[str]]:
    """``text`` -> (ARPAbet phones without stress, out-of-vocabulary words).

    OOV words are converted by the espeak G2P when phonemizer is installed; otherwise they are
    left out of the phones (see :meth:`PhoneLexicon.convert` for the skipped list)."""
    conv = default_lexicon().convert(text)
    return conv.phones, conv.oov_words


def phone_source_settings(g2p: bool = True) -> dict[str, object]:
    """What produces reference phones, for a metric's settings()."""
    from resyn_bench.core.versions import package_version as version

    return {"lexicon": f"pocketsphinx:{CMUDICT_SUBPATH} (first pronunciation, no stress)",
            "g2p": (f"phonemizer {version('phonemizer')} espeak {G2P_LANGUAGE} "
                    f"(espeakng-loader {version('espeakng-loader')}) -> ARPAbet table"
                    if g2p and EspeakG2P.available() else None)}


__all__ = ["ARPABET", "IPA_TO_ARPABET", "PhoneConversion", "PhoneLexicon", "EspeakG2P",
           "G2PUnavailable", "default_dict_path", "default_lexicon", "ipa_to_arpabet",
           "load_cmudict",
           "normalise_words", "text_to_phones", "phone_source_settings"]
