"""Run a BERT-style encoder in two halves: the frozen bottom once, the trained top many times.

Training stigma-v2 updates only the top layers of e5 (and the head). The bottom layers and the
embeddings never change, so their output for a passage is the same at every epoch: computing it
once and caching it turns each epoch into a pass over the top layers alone (about 3× faster on
two CPU cores). Inference still runs the whole encoder; :func:`forward_top` after
:func:`forward_bottom` equals the full forward pass (a test pins this).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def encoder_layers(encoder: Any) -> nn.ModuleList:
    """The transformer layers of a BERT-style encoder (``encoder.encoder.layer``)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None:
        raise TypeError(f"{type(encoder).__name__} is not a BERT-style encoder (no encoder.layer)")
    return layers


def _attention_mask(encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    """The attention mask in the form the encoder's layers expect (depends on the attention backend)."""
    mask, _ = encoder._create_attention_masks(  # noqa: SLF001 - the same call BertModel.forward makes
        attention_mask=attention_mask, encoder_attention_mask=None, embedding_output=hidden,
        encoder_hidden_states=None, cache=None, position_ids=None)
    return mask


@torch.no_grad()
def forward_bottom(encoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Hidden states after the embeddings and the first ``n_layers`` layers, shape (batch, seq, hidden)."""
    hidden = encoder.embeddings(input_ids=input_ids)
    mask = _attention_mask(encoder, hidden, attention_mask)
    for layer in encoder_layers(encoder)[:n_layers]:
        hidden = layer(hidden, mask)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return hidden


def forward_top(encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Continue from :func:`forward_bottom`'s output through the layers from ``n_layers`` on."""
    mask = _attention_mask(encoder, hidden, attention_mask)
    for layer in encoder_layers(encoder)[n_layers:]:
        hidden = layer(hidden, mask)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return hidden


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states under the attention mask (the passage embedding)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
