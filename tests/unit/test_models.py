"""The shipped moderation models: ONNX equals scikit-learn, held-out quality, fail-closed.

No scikit-learn here: the training script stored scikit-learn's scores on a sample
(``NAME.reference.json``) and a held-out sample (``NAME.heldout.jsonl.gz``) next to each
ONNX file; these tests recompute from the committed files with onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from topologies import metrics as M
from topologies.moderation import quality, runtime
from topologies.moderation.runtime import MODELS_DIR, SPAM, TOXICITY

MAX_MODEL_BYTES = 5 * 2**20


@pytest.fixture(scope="module")
def models() -> runtime.Models:
    loaded = runtime.load()
    assert loaded.unavailable == {}
    return loaded


@pytest.mark.parametrize("name", [TOXICITY, SPAM])
def test_onnx_scores_equal_scikit_learns_on_the_reference_sample(
    models: runtime.Models, name: str
) -> None:
    reference = json.loads((MODELS_DIR / f"{name}.reference.json").read_text())
    onnx = (MODELS_DIR / f"{name}.onnx").read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == reference["sha256"], "retrain wrote new refs?"
    inputs = [case["input"] for case in reference["cases"]]
    expected = np.array([case["score"] for case in reference["cases"]])
    scores = models.toxicity_scores(inputs) if name == TOXICITY else models.spam_scores(inputs)
    assert len(inputs) >= 100
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_toxicity_held_out_auc_is_at_least_0_97(models: runtime.Models) -> None:
    texts, labels = quality.heldout(TOXICITY)
    scores = models.toxicity_scores([quality.model_input(TOXICITY, t) for t in texts])
    assert quality.roc_auc(labels, scores) >= 0.97


def test_spam_held_out_f1_is_at_least_0_93(models: runtime.Models) -> None:
    texts, labels = quality.heldout(SPAM)
    scores = models.spam_scores([quality.model_input(SPAM, t) for t in texts])
    assert quality.f1(labels, scores) >= 0.93


def test_the_metric_helpers_agree_with_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert quality.roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert quality.roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert quality.f1(labels, np.array([0.1, 0.6, 0.7, 0.2])) == 0.5


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.onnx")), ids=lambda p: p.name)
def test_each_model_is_small_and_has_a_card(path: Path) -> None:
    assert path.stat().st_size < MAX_MODEL_BYTES
    card = path.with_suffix(".card.md").read_text()
    for section in ("Data", "Held-out", "Trained", "Known weaknesses"):
        assert section in card


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What a goal, what a match tonight", "en"),
        ("¡Qué golazo, increíble partido!", "es"),
        ("Quel match incroyable ce soir", "fr"),
        ("这球太漂亮了", "zh"),
        ("Чудесная игра сегодня", "ru"),
    ],
)
def test_language_is_identified_offline(models: runtime.Models, text: str, language: str) -> None:
    [(found, confidence)] = models.languages([text])
    assert found == language
    assert confidence >= runtime.LANGUAGE_MIN_CONFIDENCE


@pytest.mark.parametrize("text", ["", "\U00010330\U00010331\U00010332 \u16a0\u16a2", "12345"])
def test_no_language_is_reported_for_text_no_model_knows(models: runtime.Models, text: str) -> None:
    [(found, _)] = models.languages([text])
    assert found is None


def test_a_missing_model_folder_leaves_every_model_but_language_unavailable(
    tmp_path: Path,
) -> None:
    loaded = runtime.load(tmp_path)
    assert set(loaded.unavailable) == {TOXICITY, SPAM, runtime.LEXICON}
    assert M.moderation_model_available.labels(TOXICITY)._value.get() == 0
    with pytest.raises(runtime.ModelUnavailable):
        loaded.toxicity_scores(["hello"])
    runtime.load()  # the gauge recovers with the real models
    assert M.moderation_model_available.labels(TOXICITY)._value.get() == 1


def test_a_corrupt_model_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    for f in MODELS_DIR.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "spam.onnx").write_bytes(b"\x08\x07not a model")
    loaded = runtime.load(tmp_path)
    assert set(loaded.unavailable) == {SPAM}
    assert loaded.toxicity is not None
