"""Template kinds: a masked LM reads the label word at [MASK], a causal LM predicts it last.

A kind is everything that differs between the two objectives, for the classifier and
for pretraining alike: the model's inputs (a causal LM has no segment input), how a
template is closed and where its label slot goes, where the answer is read, and the
training targets with the auxiliary loss (BERT's 80/10/10 masking of the text, or
the next token everywhere).

Targets are an int array shaped like the input: the token to predict *at* each
position, 0 where nothing is predicted. For a causal LM they are shifted here, once
(position t holds token t+1), so one loss (`losses.gathered_crossentropy`) serves
both kinds, in classification and in pretraining.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

FIRST_NORMAL_ID = 104  # after [PAD], [unused1..99], [UNK], [CLS], [SEP], [MASK]: real tokens
BERT_PATTERN = '{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}'
GPT_PATTERN = '{p}{p}{p}{p}{text}{p}{p}{p}{p}{mask}'


@dataclass
class LossOptions:
    """The auxiliary loss that keeps the prompted text close to natural language."""
    aux_loss: bool = True  # MLM: also predict masked text; LM: predict every next token
    whole_word_mask: bool = False  # MLM: mask jieba words whole
    mask_rate: float = 0.15  # MLM: share of text tokens masked

    def __post_init__(self):
        if not 0 < self.mask_rate < 1:
            raise ValueError('mask_rate must be in (0, 1), got %r' % self.mask_rate)


def choose(candidates: np.ndarray, rng: np.random.RandomState, rate: float,
           word_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Which candidate positions to mask: each token (or each whole word) with p=`rate`.

    `word_ids` (same shape, -1 outside words) picks words: a word is masked whole.
    """
    if word_ids is None:
        return candidates & (rng.rand(*candidates.shape) < rate)
    words = np.unique(word_ids[candidates & (word_ids >= 0)])
    picked = words[rng.rand(len(words)) < rate]
    return candidates & np.isin(word_ids, picked)


def corrupt(ids: np.ndarray, chosen: np.ndarray, rng: np.random.RandomState, mask_id: int,
            vocab_size: int, first_normal_id: int = FIRST_NORMAL_ID) -> Tuple[np.ndarray, np.ndarray]:
    """BERT's rule on the `chosen` positions: 80% [MASK], 10% a random token, 10% kept.

    Returns (inputs, targets); the random tokens are real ones (never [unusedN] or a
    special token), and the targets are the original tokens at the chosen positions.
    """
    inputs = ids.copy()
    roll = rng.rand(*ids.shape)
    inputs[chosen & (roll < 0.8)] = mask_id
    random_pos = chosen & (roll >= 0.8) & (roll < 0.9)
    first = min(first_normal_id, vocab_size - 1)
    inputs[random_pos] = rng.randint(first, vocab_size, size=int(random_pos.sum()))
    return inputs, np.where(chosen, ids, 0).astype(ids.dtype)


def _as_model_input(token_ids):
    import tensorflow as tf
    return tf.zeros_like(token_ids) if tf.is_tensor(token_ids) else np.zeros_like(token_ids)


class TemplateKind:
    """The masked-LM kind (BERT's template): `[CLS] ... [MASK] ... [SEP]`."""
    name = 'mlm'
    title = 'masked LM'
    aliases: Tuple[str, ...] = ('bert',)
    causal = False
    default_pattern = BERT_PATTERN

    def inputs(self, token_ids) -> list:
        """The model's inputs for token ids (numpy or TensorFlow): ids and segment ids."""
        return [token_ids, _as_model_input(token_ids)]

    def check_pattern(self, pattern: str) -> Optional[str]:
        """A reason the pattern cannot work with this kind, or None."""
        return None

    def slot_ids(self, tokenizer, label_tokens: Optional[Sequence[int]], width: int = 1) -> List[int]:
        """What the label slot holds: one [MASK] per token of the longest label word."""
        return [tokenizer._token_mask_id] * width

    def end_ids(self, tokenizer) -> List[int]:
        return [tokenizer._token_end_id]

    def read_position(self, encoded) -> int:
        """Where the label word's (first) token is read."""
        return encoded.slot

    def summary_position(self, encoded) -> int:
        """Where a linear head reads the whole input: [CLS], which attends to everything."""
        return 0

    def training_example(self, template, text: str, label: int, rng: np.random.RandomState,
                         loss: LossOptions) -> Tuple[List[int], List[int]]:
        """(inputs, targets): the label word's tokens at its [MASK]s, plus masked text with the aux loss.

        A label word shorter than the slot leaves the [MASK]s after it without a target.
        """
        word_ids = None
        if loss.aux_loss and loss.whole_word_mask:
            text, word_ids = template.word_pieces(text)
        encoded = template.encode(text)
        ids = np.asarray(encoded.token_ids)
        targets = np.zeros_like(ids)
        inputs = ids
        if loss.aux_loss:
            candidates = np.zeros(len(ids), bool)
            candidates[encoded.text_positions] = True
            words = None
            if word_ids is not None:
                words = np.full(len(ids), -1)
                kept = word_ids[:len(encoded.text_positions)]
                words[encoded.text_positions[:len(kept)]] = kept
            chosen = choose(candidates, rng, loss.mask_rate, words)
            tok = template.tokenizer
            inputs, targets = corrupt(ids, chosen, rng, tok._token_mask_id, tok._vocab_size)
        for i, token in enumerate(template.label_tokens[label]):
            targets[encoded.slot + i] = token
        return inputs.tolist(), targets.tolist()

    def pretraining_example(self, rows: np.ndarray, rng: np.random.RandomState, tokenizer,
                            mask_rate: float = 0.15) -> Tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of packed corpus rows: 80/10/10 masking of real tokens."""
        chosen = choose(rows >= FIRST_NORMAL_ID, rng, mask_rate)
        return corrupt(rows, chosen, rng, tokenizer._token_mask_id, tokenizer._vocab_size)


class CausalKind(TemplateKind):
    """The causal-LM kind (GPT's template): `[CLS] ... text ... label-word`, no segments.

    The label word is the last token and is predicted from the position before it;
    at prediction time it is left off.
    """
    name = 'lm'
    title = 'causal LM'
    aliases = ('gpt',)
    causal = True
    default_pattern = GPT_PATTERN

    def inputs(self, token_ids) -> list:
        return [token_ids]

    def check_pattern(self, pattern: str) -> Optional[str]:
        if not pattern.endswith('{mask}'):
            return 'a causal-LM template must end with {mask}: the label word is last'
        return None

    def slot_ids(self, tokenizer, label_tokens, width=1):
        return [] if label_tokens is None else list(label_tokens)

    def end_ids(self, tokenizer) -> List[int]:
        return []

    def read_position(self, encoded) -> int:
        return encoded.slot - 1

    def summary_position(self, encoded) -> int:
        return encoded.slot - 1  # the last token: the only one that sees the whole input

    def training_example(self, template, text, label, rng, loss):
        """(inputs, shifted targets): the label word's tokens, plus every next text token with the
        aux loss. Prompt tokens are never targets: they are free parameters, not text.
        """
        encoded = template.encode(text, label)
        ids = encoded.token_ids
        targets = [0] * len(ids)
        if loss.aux_loss:
            prompts = set(encoded.prompt_positions)
            for t in range(len(ids) - 1):
                if t + 1 not in prompts:
                    targets[t] = ids[t + 1]
        for i in range(len(template.label_tokens[label])):
            targets[encoded.slot - 1 + i] = ids[encoded.slot + i]
        return list(ids), targets

    def pretraining_example(self, rows, rng, tokenizer, mask_rate=0.15):
        """(rows, next-token targets); padding (0) is never a target."""
        targets = np.zeros_like(rows)
        targets[:, :-1] = rows[:, 1:]
        return rows, targets


KINDS: Dict[str, TemplateKind] = {}


def register(kind: TemplateKind) -> TemplateKind:
    for name in (kind.name,) + tuple(kind.aliases):
        KINDS[name] = kind
    return kind


MLM = register(TemplateKind())
LM = register(CausalKind())


def get_kind(kind) -> TemplateKind:
    """A kind by name ('mlm'/'lm', or the older 'bert'/'gpt'), or the kind itself."""
    if isinstance(kind, TemplateKind):
        return kind
    if kind not in KINDS:
        raise ValueError('kind must be one of %s, got %r' % (', '.join(sorted(KINDS)), kind))
    return KINDS[kind]


def kind_names() -> List[str]:
    return sorted({k.name for k in KINDS.values()})


def word_ids_of(pieces: Sequence[Sequence[int]]) -> Tuple[List[int], np.ndarray]:
    """Flatten per-word token ids; returns (ids, the word index of every id)."""
    ids, words = [], []
    for w, piece in enumerate(pieces):
        ids.extend(piece)
        words.extend([w] * len(piece))
    return ids, np.asarray(words, int)
