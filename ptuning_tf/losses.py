"""Training targets and the one loss both model kinds share.

Targets are an int array the shape of the input: the token that must be predicted
*at* each position, 0 where nothing is predicted. For BERT that is the label word at
`[MASK]` plus, with the auxiliary loss, the original tokens at randomly masked text
positions. For GPT the targets are shifted here, once: position t holds token t+1,
so the label word is read at the position before it and the full-sequence LM loss
is the same masked cross-entropy.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .templates import Encoded, Template


def masked_crossentropy(y_true, y_pred):
    """Cross-entropy over logits at positions with target id != 0, averaged over them."""
    y_true = tf.cast(y_true, tf.int32)
    weights = tf.cast(tf.not_equal(y_true, 0), y_pred.dtype)
    losses = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def gathered_crossentropy(y_true, y_pred):
    """`masked_crossentropy` when `y_pred` holds logits only at the targeted positions.

    `y_pred` is [N, V], the head applied to `TargetRows` of the hidden states; the
    targets are picked in the same row-major order. The value is the same as the
    full-sequence loss, without computing the vocabulary softmax where nothing is
    predicted (85% of the positions under BERT's 15% masking, and all padding).
    """
    y_true = tf.cast(y_true, tf.int32)
    picked = tf.boolean_mask(y_true, tf.not_equal(y_true, 0))
    losses = tf.keras.losses.sparse_categorical_crossentropy(picked, y_pred, from_logits=True)
    return tf.reduce_sum(losses) / tf.maximum(tf.cast(tf.size(picked), y_pred.dtype), 1.0)


def choose_masked(positions: Sequence[int], rng: np.random.RandomState, rate: float = 0.15,
                  word_ids: Optional[Sequence[int]] = None) -> List[int]:
    """Positions to corrupt: each token (or each whole word, with `word_ids`) at `rate`."""
    if word_ids is None:
        return [p for p in positions if rng.rand() < rate]
    picked_words = {w for w in sorted(set(word_ids)) if rng.rand() < rate}
    return [p for p, w in zip(positions, word_ids) if w in picked_words]


def corrupt(token_ids: List[int], chosen: Sequence[int], rng: np.random.RandomState,
            mask_id: int, vocab_size: int, first_normal_id: int = 104) -> Tuple[List[int], List[int]]:
    """BERT's 80/10/10 rule on `chosen` positions; returns (inputs, targets)."""
    inputs, targets = list(token_ids), [0] * len(token_ids)
    for p in chosen:
        targets[p] = token_ids[p]
        roll = rng.rand()
        if roll < 0.8:
            inputs[p] = mask_id
        elif roll < 0.9:
            inputs[p] = int(rng.randint(first_normal_id, vocab_size))
    return inputs, targets


def mlm_example(template: Template, encoded: Encoded, label: int, rng: Optional[np.random.RandomState],
                rate: float = 0.15, word_ids: Optional[Sequence[int]] = None) -> Tuple[List[int], List[int]]:
    """(inputs, targets) for BERT: the label word at [MASK], plus random text masking if `rng`."""
    tok = template.tokenizer
    if rng is None:
        inputs, targets = list(encoded.token_ids), [0] * len(encoded.token_ids)
    else:
        words = None if word_ids is None else list(word_ids)[:len(encoded.text_positions)]
        chosen = choose_masked(encoded.text_positions, rng, rate, words)
        first_normal = min(104, tok._vocab_size - 1)
        inputs, targets = corrupt(encoded.token_ids, chosen, rng, tok._token_mask_id,
                                  tok._vocab_size, first_normal)
    targets[encoded.slot] = template.label_ids[label]
    return inputs, targets


def lm_example(template: Template, encoded: Encoded, full_sequence: bool = True) -> Tuple[List[int], List[int]]:
    """(inputs, shifted targets) for GPT: label word only, or every next text/label token."""
    ids = encoded.token_ids
    targets = [0] * len(ids)
    if full_sequence:
        prompts = set(encoded.prompt_positions)
        for t in range(len(ids) - 1):
            if t + 1 not in prompts:  # prompt tokens are free parameters, not text to predict
                targets[t] = ids[t + 1]
    targets[encoded.slot - 1] = ids[encoded.slot]
    return list(ids), targets


def word_tokenize(template: Template, text: str) -> Tuple[List[int], List[int]]:
    """Token ids of `text` and, for each, the index of its jieba word (whole-word masking)."""
    import jieba
    from .data import normalize_text
    ids, word_ids = [], []
    # jieba must cut the text the model sees: the normalized one (as Template.encode does)
    for w, word in enumerate(jieba.lcut(normalize_text(text))):
        piece = template.text_token_ids(word)
        ids.extend(piece)
        word_ids.extend([w] * len(piece))
    return ids, word_ids
