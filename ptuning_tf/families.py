"""Backbone families: which bert4keras class builds a checkpoint, and how to recognise it.

A family is one small object registered by name. Everything else (templates, losses,
methods, the checkpoint writer) is written against the bert4keras `Transformer` API and
never asks which family it holds; adding a family adds an entry here.

Both template kinds run on every family: the masked-LM template on the encoder as
published, the causal-LM template on the same class with a lower-triangular attention
mask (`causal_variant`), the NEZHA-GPT layout (no segment input).
"""
from typing import Dict, Iterable, Optional, Type

import numpy as np
from bert4keras.models import BERT, RoFormer

from .layers import CausalMask

POSITION_EMBEDDINGS = 'bert/embeddings/position_embeddings'


def sinusoid_positions(n: int, dim: int, std: float) -> np.ndarray:
    """Transformer sinusoids rescaled to `std`: a start for learned position embeddings.

    Measured here: a BERT whose position embeddings started random still predicted masked
    characters from the bag of surrounding characters after 8M tokens, with the position
    table barely moved. Sinusoids give word order from step 0 and stay trainable; the
    checkpoint layout is unchanged.
    """
    angles = np.arange(n)[:, None] * np.exp(-np.log(1e4) * np.arange(0, dim, 2) / dim)[None]
    table = np.zeros((n, dim), dtype='float32')
    table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles[:, :dim // 2])
    return table * (std / table.std())


class CausalAttention:
    """Mixin: a lower-triangular attention mask, as bert4keras' `application='lm'`, but
    as a `CausalMask` layer instead of a `Lambda`, so saved models reload in safe mode."""

    def compute_attention_bias(self, inputs=None):
        if self.attention_bias is None:
            self.attention_bias = self.apply(inputs=self.inputs[0], layer=CausalMask,
                                             name='Attention-LM-Mask')
        return self.attention_bias


_CAUSAL: Dict[type, type] = {}


def causal_variant(cls: type) -> type:
    """`cls` with the causal mask (one class per base, so isinstance checks hold)."""
    if cls not in _CAUSAL:
        _CAUSAL[cls] = type('Causal' + cls.__name__, (CausalAttention, cls), {})
    return _CAUSAL[cls]


class Family:
    """One backbone family: its bert4keras class and how its checkpoints look."""
    name = 'bert'
    encoder: Type = BERT
    absolute_positions = True  # a learned position table, `POSITION_EMBEDDINGS`

    def model_class(self, causal: bool = False) -> type:
        return causal_variant(self.encoder) if causal else self.encoder

    def recognises(self, variable_names: Iterable[str]) -> bool:
        """Whether a checkpoint with these variables is of this family."""
        return (POSITION_EMBEDDINGS in set(variable_names)) == self.absolute_positions

    def __repr__(self):
        return 'Family(%r)' % self.name


class RoFormerFamily(Family):
    """Rotary positions (Su et al. 2021): BERT's variables without the position table.

    Measured here (README_zh section 8): on a small pretraining budget a BERT with
    learned absolute positions stays a bag of words, the same model with rotary
    positions uses word order within a few hundred steps.
    """
    name = 'roformer'
    encoder = RoFormer
    absolute_positions = False


FAMILIES: Dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


register(Family())
register(RoFormerFamily())

CausalBERT = causal_variant(BERT)


def get_family(name) -> Family:
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise ValueError('unknown model family %r; known: %s' % (name, ', '.join(FAMILIES)))
    return FAMILIES[name]


def detect_family(config: dict, variable_names: Optional[Iterable[str]] = None) -> Family:
    """The family a model directory says (config `"model"`), else the one its variables fit.

    A directory written by this project names its family in config.json; a user's
    checkpoint (roformer_chinese_base, chinese_roberta_wwm_ext) is recognised by
    whether it has a learned position table. Raises ValueError on a contradiction.
    """
    named = config.get('model')
    if named is not None:
        family = get_family(named)
        if variable_names is not None and not family.recognises(variable_names):
            raise ValueError('config says model %r, but the checkpoint %s a position table (%s)'
                             % (named, 'lacks' if family.absolute_positions else 'has',
                                POSITION_EMBEDDINGS))
        return family
    if variable_names is None:
        return FAMILIES['bert']
    names = list(variable_names)
    matches = [f for f in FAMILIES.values() if f.recognises(names)]
    return matches[0]
