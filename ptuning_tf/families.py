"""Backbone families: which bert4keras class builds a checkpoint, and how to recognise it.

A family is one small object registered by name. Everything else (templates, losses,
methods, the checkpoint writer) is written against the bert4keras `Transformer` API and
never asks which family it holds; adding a family adds an entry here.

Both template kinds run on every family: the masked-LM template on the encoder as
published, the causal-LM template on the same class with a lower-triangular attention
mask (`causal_variant`), the NEZHA-GPT layout (no segment input).
"""
from typing import Dict, Iterable, Optional, Set, Type

import numpy as np
from bert4keras.models import ALBERT, BERT, GPT2, GPT2_ML, NEZHA, ALBERT_Unshared, RoFormer, RoFormerV2

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


class HiddenCapture:
    """Mixin: remembers the last hidden states, the input of the family's output head.

    The classifier runs the head only where a token is predicted; it splits every family
    the same way: the body up to `last_hidden`, then `apply_final_layers` (the head the
    family itself defines, reusing its layers) on whatever rows are picked.
    """
    last_hidden = None

    def apply_final_layers(self, inputs):
        if self.last_hidden is None:
            self.last_hidden = inputs
        return super().apply_final_layers(inputs)


_VARIANTS: Dict[tuple, type] = {}


def _variant(cls: type, causal: bool) -> type:
    """`cls` with the hidden-state capture and, if `causal`, the causal mask (cached)."""
    key = (cls, causal)
    if key not in _VARIANTS:
        bases = ((CausalAttention,) if causal else ()) + (HiddenCapture, cls)
        _VARIANTS[key] = type(('Causal' if causal else '') + cls.__name__, bases, {})
    return _VARIANTS[key]


def causal_variant(cls: type) -> type:
    """`cls` with the causal mask (one class per base, so isinstance checks hold)."""
    return _variant(cls, True)


BERT_SCOPES = ('bert/embeddings/', 'bert/encoder/', 'cls/predictions/')


class Family:
    """One backbone family: its bert4keras class and how its checkpoints look.

    Subclasses override attributes and `recognises`; everything else is shared.
    """
    name = 'bert'  # also bert4keras' `model=` name
    encoder: Type = BERT
    absolute_positions = True  # a learned position table limits maxlen
    word_embeddings = 'bert/embeddings/word_embeddings'
    last_layer = 'bert/encoder/layer_%d/output/dense/kernel'  # None: no per-layer variables
    scopes = BERT_SCOPES  # a checkpoint's model weights (the rest may go unused)
    causal_only = False  # a causal LM by construction: only the LM template
    automatic = True  # recognised from a checkpoint; False: only when named
    head_options = {'with_mlm': 'linear'}  # the bert4keras option that makes the head give logits

    def model_class(self, causal: bool = False) -> type:
        if self.causal_only and not causal:
            raise ValueError('%s is a causal LM: use the LM template (kind=\'lm\')' % self.name)
        return _variant(self.encoder, causal)

    def recognises(self, names: Set[str], config: dict) -> bool:
        """Whether a checkpoint with these variables (and this config) is of this family."""
        return self.word_embeddings in names and POSITION_EMBEDDINGS in names and not _albert(names)

    def __repr__(self):
        return 'Family(%r)' % self.name


def _albert(names: Set[str]) -> bool:
    return any(n.startswith('bert/encoder/transformer/group_0/') for n in names)


def _relative(config: dict) -> bool:
    return 'max_relative_position' in config or config.get('use_relative_position', False)


class RoFormerFamily(Family):
    """Rotary positions (Su et al. 2021): BERT's variables without the position table.

    Measured here (README_zh section 8): on a small pretraining budget a BERT with
    learned absolute positions stays a bag of words, the same model with rotary
    positions uses word order within a few hundred steps.
    """
    name = 'roformer'
    encoder = RoFormer
    absolute_positions = False

    def recognises(self, names, config):
        return (self.word_embeddings in names and POSITION_EMBEDDINGS not in names
                and 'bert/embeddings/LayerNorm/gamma' in names and not _relative(config))


class NezhaFamily(RoFormerFamily):
    """Huawei's NEZHA: functional relative positions, so no position table either; its
    config says `max_relative_position` / `use_relative_position`."""
    name = 'nezha'
    encoder = NEZHA

    def recognises(self, names, config):
        return (self.word_embeddings in names and POSITION_EMBEDDINGS not in names
                and _relative(config))


class RoFormerV2Family(RoFormerFamily):
    """RoFormer-v2: no biases, layer norms without parameters, the head is the tied embedding."""
    name = 'roformer_v2'
    encoder = RoFormerV2

    def recognises(self, names, config):
        return (self.word_embeddings in names and POSITION_EMBEDDINGS not in names
                and 'bert/embeddings/LayerNorm/gamma' not in names)


class AlbertFamily(Family):
    """ALBERT: one shared layer, a factorised embedding (the prompt rows live in the small
    table, `embedding_size` wide, mapped up by `Embedding-Mapping`)."""
    name = 'albert'
    encoder = ALBERT
    last_layer = None

    def recognises(self, names, config):
        return self.word_embeddings in names and _albert(names)


class AlbertUnsharedFamily(AlbertFamily):
    """ALBERT's weights loaded into separate layers (bert4keras `albert_unshared`); never
    recognised by itself: name it (`--family albert_unshared`)."""
    name = 'albert_unshared'
    encoder = ALBERT_Unshared
    automatic = False


class GPT2Family(Family):
    """GPT-2 layout (bert4keras `gpt2`, e.g. CPM-LM): pre-norm blocks, `gpt/` variables."""
    name = 'gpt2'
    encoder = GPT2
    word_embeddings = 'gpt/embeddings/word_embeddings'
    last_layer = 'gpt/transformer/layer_%d/output/dense/kernel'
    scopes = ('gpt/',)
    causal_only = True
    head_options = {'final_activation': 'linear'}  # bert4keras' GPTs always have their LM head

    def recognises(self, names, config):
        return self.word_embeddings in names and 'gpt/output/LayerNorm/gamma' in names


class GPT2MLFamily(Family):
    """GPT2-ML (bert4keras `gpt2_ml`, e.g. the 1.5B Chinese model): `newslm/` variables."""
    name = 'gpt2_ml'
    encoder = GPT2_ML
    word_embeddings = 'newslm/embeddings/word_embed'
    last_layer = 'newslm/layer%02d/output/kernel'
    scopes = ('newslm/',)
    causal_only = True
    head_options = {'final_activation': 'linear'}

    def recognises(self, names, config):
        return self.word_embeddings in names


FAMILIES: Dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


for _family in (Family(), RoFormerFamily(), NezhaFamily(), RoFormerV2Family(), AlbertFamily(),
                AlbertUnsharedFamily(), GPT2Family(), GPT2MLFamily()):
    register(_family)
del _family

CausalBERT = causal_variant(BERT)
# ELECTRA is not a family here: bert4keras 0.11.5 builds only its discriminator (its ELECTRA
# deletes `with_mlm` and maps no generator_predictions/* variable), and a discriminator
# has no MLM head to read a label word from.


def get_family(name) -> Family:
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        hint = ' (bert4keras 0.11.5 builds no ELECTRA generator with an MLM head)' if name == 'electra' else ''
        raise ValueError('unknown model family %r; known: %s%s' % (name, ', '.join(FAMILIES), hint))
    return FAMILIES[name]


def detect_family(config: dict, variable_names: Optional[Iterable[str]] = None,
                  override: Optional[str] = None) -> Family:
    """The family given (`override`), or the one config.json names (`"model"`, which this
    project's exports write), else the one the checkpoint's variables fit.

    A named family that the variables contradict is a ValueError that says what the
    checkpoint looks like; so is a checkpoint no family recognises.
    """
    names = None if variable_names is None else set(variable_names)
    named = override or config.get('model')
    if named is not None:
        family = get_family(named)
        if names is not None and family.automatic and not family.recognises(names, config):
            found = [f.name for f in FAMILIES.values() if f.automatic and f.recognises(names, config)]
            if family.absolute_positions != (POSITION_EMBEDDINGS in names) and \
                    family.word_embeddings in names:
                what = 'lacks' if family.absolute_positions else 'has'
                raise ValueError('config says model %r, but the checkpoint %s a position table (%s)'
                                 % (named, what, POSITION_EMBEDDINGS))
            raise ValueError('the model is said to be %r, but the checkpoint looks like %s'
                             % (named, found[0] if found else 'no known family'))
        return family
    if names is None:
        return FAMILIES['bert']
    matches = [f for f in FAMILIES.values() if f.automatic and f.recognises(names, config)]
    if len(matches) != 1:
        raise ValueError('cannot tell the model family from the checkpoint (%s); name it with '
                         '--family (one of %s)' % ('it fits %s' % ', '.join(f.name for f in matches)
                                                  if matches else 'no known variable layout',
                                                  ', '.join(FAMILIES)))
    return matches[0]
