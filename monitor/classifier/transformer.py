"""Inference with the fine-tuned stigma model: passages, batching by length, optional int8 on CPU."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..models import Classification, Passage
from .passages import split_passages
from .registry import ClassifierSpec, load_stigma_model
from .targets import Watchlist
from .verdict import article_verdict

LOGGER = logging.getLogger(__name__)
MAX_TEXT_CHARS = 200_000  # longer texts are scored on their first 200k characters (and say so)


def model_version(directory: Path, spec: ClassifierSpec) -> str:
    """Version string: the definition's version plus a short hash of the head and card.

    Two different trainings never share a version, so their classifications never collide. A
    shipped model's version (``shipped.json``, written at assembly) hashes the committed weights
    and the definition instead, so every install prints the same one.
    """
    stamp = directory / "shipped.json"
    if stamp.is_file():
        return str(json.loads(stamp.read_text())["version"])
    h = hashlib.sha256()
    for name in ("head.safetensors", "labels.json", "card.json"):
        p = directory / name
        if p.is_file():
            h.update(p.read_bytes())
    return f"{spec.version}+{h.hexdigest()[:10]}"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the encoder's attention and intermediate Linear layers.

    Off for stigma-v1: the activation scale is computed per input tensor, so a passage's score
    depends on the other passages of its batch (up to 0.47 on dev; docs/classifier-v1.md).

    The feed-forward OUTPUT projections and the head stay fp32: quantising them per-tensor
    flipped 10 % of dev-set decisions (outlier activations, worst in layer 4), while attention +
    intermediate alone agree with fp32 on 99.5 % (docs/classifier-v1.md). torch marks its quantised
    tensor constructors deprecated (pytorch#184982) but ships them in 2.13; the warning is
    silenced here, where we choose to use them, and nowhere else.
    """
    import warnings

    layers = getattr(getattr(getattr(model, "encoder", None), "encoder", None), "layer", None)
    if layers is None:
        return model  # not a BERT-style encoder: keep fp32 rather than guess
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated", category=DeprecationWarning)
        for layer in layers:
            layer.attention = torch.ao.quantization.quantize_dynamic(layer.attention, {torch.nn.Linear}, dtype=torch.qint8)
            layer.intermediate = torch.ao.quantization.quantize_dynamic(layer.intermediate, {torch.nn.Linear},
                                                                        dtype=torch.qint8)
    return model


def embedding_bytes(pooled: torch.Tensor) -> list[bytes]:
    """Each row L2-normalised and stored as little-endian float16 (768 bytes for e5-small's 384 dimensions).

    Campaign detection compares flagged passages by the dot product of these vectors (cosine):
    e5 puts Spanish paraphrases at 0.91-0.96 (../shared/MODELS.md).
    """
    normed = torch.nn.functional.normalize(pooled.float(), dim=-1).numpy().astype("<f2")
    return [row.tobytes() for row in normed]


class TransformerClassifier:
    """Scores passages with a :class:`StigmaModel` and builds article verdicts."""

    def __init__(self, spec: ClassifierSpec, weights: Path | str, quantize: str | None = None,
                 batch_size: int = 32, threads: int | None = None):
        self.spec = spec
        self.weights = Path(str(weights))
        self.model_id = spec.name
        self.model_version = model_version(self.weights, spec)
        torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
        model, self.tokenizer = load_stigma_model(self.weights)
        self.quantize = quantize if quantize is not None else spec.quantize
        if self.quantize == "int8":
            model = quantize_int8(model)
        self.model = model.eval()
        self.labels = model.labels
        limit = int(getattr(model.encoder.config, "max_position_embeddings", spec.max_length) or spec.max_length)
        self.max_length = min(spec.max_length, limit)           # a smaller user model caps the length
        self.passage_max_tokens = min(spec.passage_max_tokens, self.max_length)
        self.batch_size = batch_size
        self.watchlist = Watchlist.load(spec.watchlist) if spec.watchlist else None
        self.gate = spec.relevance_gate()
        self.device = torch.device("cpu")
        card = self.weights / "card.json"
        self.card: dict[str, Any] = json.loads(card.read_text()) if card.is_file() else {}

    def to_device(self, device: str) -> None:
        """Run the model on ``device`` ("cuda" in a backfill's GPU actors); tokenising and verdicts stay on the CPU."""
        self.device = torch.device(device)
        self.model = self.model.to(self.device)

    # -- token counting and passages ---------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (prefix and special tokens included)."""
        return len(self.tokenizer(self.spec.input_prefix + text, add_special_tokens=True)["input_ids"])

    def passages_of(self, text: str) -> list[tuple[int, int]]:
        """Passage spans of ``text`` that fit the model."""
        return split_passages(text[:MAX_TEXT_CHARS], self.passage_max_tokens, self.spec.passage_min_chars,
                              count_tokens=self.count_tokens)

    # -- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def score_texts(self, texts: list[str]) -> list[dict[str, Any]]:
        """Raw head outputs for each text, scored as ONE passage each (truncated to max_length)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[dict[str, Any] | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([self.spec.input_prefix + texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            pooled = self.model.pool(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            probs = {k: v.cpu() for k, v in self.model.probabilities(self.model.head(pooled)).items()}  # eval: no dropout
            pooled = pooled.cpu()   # no-ops on the CPU; from a GPU (a backfill's GPU actors) the verdicts come back here
            vectors = embedding_bytes(pooled)
            for row, i in enumerate(idx):
                results[i] = {
                    "embedding": vectors[row],
                    "stigmatising": float(probs["stigmatising"][row]),
                    "relevance": float(probs["relevance"][row]),
                    "categories": {c: float(probs["categories"][row, j]) for j, c in enumerate(self.labels.categories)},
                    "voices": {v: float(probs["voices"][row, j]) for j, v in enumerate(self.labels.voices)},
                }
        return [r for r in results if r is not None]

    def passage_score(self, raw: dict[str, Any]) -> float:
        """One ranking score per passage: P(stigmatising), damped when the passage is off-topic.

        score = P(stig) * min(1, P(relevance) / t_relevance): a passage that is not about
        defenders, NGOs, journalists, victims or oversight bodies cannot reach the flag threshold.
        """
        t_rel = self.spec.threshold("relevance", 0.5)
        return raw["stigmatising"] * min(1.0, raw["relevance"] / t_rel) if t_rel > 0 else raw["stigmatising"]

    def classify(self, texts: list[str]) -> list[Classification]:
        """Classify texts (articles or passages), one result per text, same order."""
        spans = [self.passages_of(t) if t.strip() else [] for t in texts]
        flat = [(ti, s, e) for ti, sp in enumerate(spans) for s, e in sp]
        # Cascade: stigmatisation always has a target. A passage naming no defender, organisation,
        # collective, journalist or oversight body (relevance_terms) is not sent to the model.
        gated = [x for x in flat if self.gate is None or self.gate(texts[x[0]][x[1]:x[2]])]
        raw = self.score_texts([texts[ti][s:e] for ti, s, e in gated]) if gated else []
        per_text: list[list[Passage]] = [[] for _ in texts]
        for (ti, s, e), r in zip(gated, raw):
            voice = max(r["voices"], key=lambda v: r["voices"][v])
            per_text[ti].append(Passage(start=s, end=e, text=texts[ti][s:e], score=self.passage_score(r),
                                        categories=r["categories"], voice=voice, voice_scores=r["voices"],
                                        relevance=r["relevance"], embedding=r["embedding"]))
        threshold = self.spec.threshold("stigmatising", 0.5)
        counts = [len(sp) for sp in spans]
        return [replace(article_verdict(self.model_id, self.model_version, t, ps, threshold, self.watchlist),
                        n_passages=n) for t, ps, n in zip(texts, per_text, counts)]
