"""Held-out quality of the shipped models, without scikit-learn.

The training script commits a held-out sample next to each model; CI and
``python -m perf moderation`` recompute the metrics from the ONNX files with these.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from topologies.moderation.features import spam_text
from topologies.moderation.normalize import skeleton
from topologies.moderation.runtime import MODELS_DIR, SPAM


def model_input(model: str, text: str) -> str:
    """What the named model is fed for a raw comment (as in training)."""
    skel = skeleton(text)
    return spam_text(text, skel) if model == SPAM else skel


def heldout(model: str, directory: Path = MODELS_DIR) -> tuple[list[str], np.ndarray]:
    """The committed held-out sample: raw texts and their labels."""
    texts: list[str] = []
    labels: list[int] = []
    with gzip.open(directory / f"{model}.heldout.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return texts, np.array(labels, dtype=np.int64)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive outscores a negative (ties half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    predicted = scores > threshold
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
