"""The stigma model: a transformer encoder, mean pooling, and one linear multi-task head.

Outputs per passage (logits, in this order): ``stigmatising``, ``relevance`` (is it about
defenders, NGOs, journalists, victims' collectives or oversight bodies?), one per category
(independent sigmoids), and one per voice (a softmax).

Saved as a directory: the encoder (``config.json`` + ``model.safetensors``, loadable by
``AutoModel``), the tokenizer, ``head.safetensors`` and ``labels.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

HEAD_FILE = "head.safetensors"
LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class Labels:
    """The order of the head's outputs."""

    categories: tuple[str, ...]
    voices: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of logits."""
        return 2 + len(self.categories) + len(self.voices)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form (``labels.json``)."""
        return {"outputs": ["stigmatising", "relevance", *self.categories, *[f"voice:{v}" for v in self.voices]],
                "categories": list(self.categories), "voices": list(self.voices)}

    @classmethod
    def read(cls, directory: Path) -> "Labels":
        """Read ``labels.json`` from a model directory."""
        data = json.loads((directory / LABELS_FILE).read_text())
        return cls(tuple(data["categories"]), tuple(data["voices"]))


def save_encoder(model: Any, directory: Path) -> None:
    """``save_pretrained`` as safetensors, without transformers' "Writing model shards" progress bar.

    The bar is noise in ``monitor model prepare`` / ``make demo`` output and in CI logs.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Save a tokenizer so that transformers 4.x can read it too.

    transformers 5 writes ``tokenizer_class: TokenizersBackend``, which 4.x cannot load;
    ``PreTrainedTokenizerFast`` is portable.
    """
    tokenizer.save_pretrained(directory)
    cfg_path = Path(directory) / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("tokenizer_class") == "TokenizersBackend":
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
            cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


class StigmaModel(nn.Module):
    """Encoder + mean pooling + linear head."""

    def __init__(self, encoder: nn.Module, labels: Labels, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.labels = labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, labels.size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, labels.size)."""
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's mean-pooled last hidden state, shape (batch, hidden): the passage embedding."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def probabilities(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split logits into named probabilities."""
        n_cat = len(self.labels.categories)
        return {
            "stigmatising": torch.sigmoid(logits[:, 0]),
            "relevance": torch.sigmoid(logits[:, 1]),
            "categories": torch.sigmoid(logits[:, 2:2 + n_cat]),
            "voices": torch.softmax(logits[:, 2 + n_cat:], dim=-1),
        }

    def save(self, directory: str | Path, tokenizer: Any) -> None:
        """Write encoder, tokenizer, head and labels into ``directory``."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out, safe_serialization=True)
        save_tokenizer(tokenizer, out)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_FILE))
        (out / LABELS_FILE).write_text(json.dumps(self.labels.to_json(), indent=2))
