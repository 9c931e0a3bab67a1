"""``python -m perf moderation``: held-out quality and batched cost of the moderation models.

Quality is recomputed from the committed ONNX files on the committed held-out samples
(``topologies/moderation/models/*.heldout.jsonl.gz``); the full held-out split's figures,
measured at training time, are copied from ``training.json`` next to them. Cost is the
whole moderate stage (normalise, rules, toxicity, spam, language, word lists) over
batches as a worker takes them, plus the fingerprint the pipeline computes per comment;
each ML part is also timed alone. No servers needed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deploy.settings import Settings
from perf.load import PHRASES
from schemas.records import CommentSubmitted, EventStatus, LiveEvent
from topologies.moderation import quality, runtime
from topologies.moderation.features import spam_text
from topologies.moderation.normalize import fingerprint, skeleton, visible
from topologies.stages.moderate import ModelEngine, ModerationInput


def _timed(fn: Callable[[], object], repeat: int) -> float:
    # CPU time of this process: the stack shares the cores, wall time would measure it.
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def run(settings: Settings, *, quick: bool, batch: int = 64) -> dict[str, Any]:
    models = runtime.load(settings.moderation_models_dir)
    if models.unavailable:
        raise RuntimeError(f"models unavailable: {models.unavailable}")
    notes: list[str] = []

    tox_texts, tox_labels = quality.heldout(runtime.TOXICITY)
    tox_scores = models.toxicity_scores([quality.model_input("toxicity", t) for t in tox_texts])
    spam_texts, spam_labels = quality.heldout(runtime.SPAM)
    spam_scores = models.spam_scores([quality.model_input("spam", t) for t in spam_texts])
    pool_raw = tox_texts + spam_texts
    trained = json.loads((runtime.MODELS_DIR / "training.json").read_text())
    full = {m["name"]: m["heldout"] for m in trained["models"]}

    # Comments as a chat sees them: short. The load generator's phrases and the held-out
    # texts' first sentences (up to 200 characters); the longest comments validation lets
    # through (500 characters) are timed separately.
    firsts = [re.split(r"(?<=[.!?\n])\s", t.strip(), maxsplit=1)[0][:200] for t in pool_raw]
    pool = firsts + list(PHRASES) * 100
    rng = np.random.default_rng(5)
    n = 5_000 if quick else 50_000
    texts = [pool[i] for i in rng.integers(0, len(pool), size=n)]
    event = LiveEvent(
        event_id="bench", title="bench", status=EventStatus.LIVE, created_at=0, updated_at=0
    )
    inputs = [
        ModerationInput(
            CommentSubmitted(
                comment_id=f"c{i}",
                event_id="bench",
                user_id=f"u{i % 500}",
                text=t,
                submitted_at=i,
                gateway_id="bench",
            ),
            event,
            None,
        )
        for i, t in enumerate(texts)
    ]
    batches = [inputs[i : i + batch] for i in range(0, n, batch)]
    engine = ModelEngine(models)
    engine.assess(batches[0])  # warm-up: first onnxruntime call allocates
    repeat = 2 if quick else 3

    def stage() -> None:
        skeleton.cache_clear()  # cold: every text normalised once, as for unique comments
        for b in batches:
            engine.assess(b)

    def fingerprints() -> None:
        skeleton.cache_clear()
        for t in texts:
            fingerprint(t)

    skels = [skeleton(t) for t in texts]
    spam_inputs = [spam_text(t, s) for t, s in zip(texts, skels, strict=True)]
    visibles = [visible(t) for t in texts]

    def part(fn: Callable[[list[str]], object], data: list[str]) -> Callable[[], None]:
        def go() -> None:
            for i in range(0, n, batch):
                fn(data[i : i + batch])

        return go

    per = 1e6 / n
    stage_us = _timed(stage, repeat) * per
    longest = [inputs[i] for i in range(0, min(n, 2048))]
    longest = [
        ModerationInput(
            CommentSubmitted(
                comment_id=item.comment.comment_id,
                event_id="bench",
                user_id=item.comment.user_id,
                text=(pool_raw[i % len(pool_raw)] * 5)[: settings.comment_max_chars],
                submitted_at=0,
                gateway_id="bench",
            ),
            event,
            None,
        )
        for i, item in enumerate(longest)
    ]
    skeleton.cache_clear()
    long_us = (
        _timed(
            lambda: [engine.assess(longest[i : i + batch]) for i in range(0, len(longest), batch)],
            repeat,
        )
        * 1e6
        / len(longest)
    )
    fingerprint_us = _timed(fingerprints, repeat) * per
    parts = {
        "normalise_us": _timed(lambda: [skeleton.__wrapped__(t) for t in texts], repeat) * per,
        "toxicity_onnx_us": _timed(part(models.toxicity_scores, skels), repeat) * per,
        "spam_onnx_us": _timed(part(models.spam_scores, spam_inputs), repeat) * per,
        "language_us": _timed(part(models.languages, visibles), repeat) * per,
    }
    notes.append(
        "quality: committed held-out samples recomputed from the ONNX files "
        f"(toxicity {len(tox_texts)} of the {trained['models'][0]['heldout_rows']}-text "
        "held-out split, spam: the whole held-out split); full-split figures from "
        "training are under trained_heldout"
    )
    notes.append(
        f"us_per_comment: the moderate stage (rules + all ML) in batches of {batch}, best of "
        f"{repeat}, one thread, CPU time of the process (the machine is shared with the "
        "running stack); us_per_comment_500_chars: comments of the longest length accepted"
    )
    return {
        "bench": "moderation",
        "quick": quick,
        "params": {"comments": n, "batch": batch, "threads": 1},
        "metrics": {
            "toxicity_auc": round(quality.roc_auc(tox_labels, tox_scores), 4),
            "toxicity_f1": round(quality.f1(tox_labels, tox_scores), 4),
            "spam_f1": round(quality.f1(spam_labels, spam_scores), 4),
            "spam_auc": round(quality.roc_auc(spam_labels, spam_scores), 4),
            "us_per_comment": round(stage_us, 1),
            "us_per_comment_with_fingerprint": round(stage_us + fingerprint_us, 1),
            "us_per_comment_500_chars": round(long_us, 1),
            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
            **{k: round(v, 1) for k, v in parts.items()},
            "fingerprint_us": round(fingerprint_us, 1),
            "trained_heldout": full,
        },
        "notes": notes,
    }
