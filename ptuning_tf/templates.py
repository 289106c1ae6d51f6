"""Prompt templates and label words (verbalizers) for masked-LM and causal-LM models.

A template is a pattern string with three placeholders: `{p}` a learnable prompt
token (`[unused1]`, `[unused2]`, ... in order), `{mask}` the slot where the label word
is predicted, `{text}` the input. Anything else is literal text, which is how PET's
manual template `{mask}满意。{text}` is written. What the slot holds and how the
sequence ends is the template kind's business (kinds.py): `[MASK]` and `[SEP]` for a
masked LM; for a causal LM the label word itself, predicted from the position before.
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .data import normalize_text
from .kinds import BERT_PATTERN, GPT_PATTERN, TemplateKind, get_kind, word_ids_of  # noqa: F401

PIECE = re.compile(r'\{p\}|\{mask\}|\{text\}')
RESERVED = re.compile(r'\[unused\d+\]')  # tokens that no text produces: free to learn
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
PET_PATTERN = '{mask}满意。{text}'
DEFAULT_LABEL_WORDS = ('不', '很')  # label 0 = negative ("not"), 1 = positive ("very")


class TemplateError(ValueError):
    """A template or label word that the vocabulary cannot express exactly."""


def pattern(prefix: int = 4, infix: int = 4, kind='mlm') -> str:
    """The reference layout with `prefix` prompt tokens before and `infix` after the slot/text.

    Masked LM: prompts, [MASK], prompts, text; causal LM: prompts, text, prompts, label.
    """
    if get_kind(kind).causal:
        return '{p}' * prefix + '{text}' + '{p}' * infix + '{mask}'
    return '{p}' * prefix + '{mask}' + '{p}' * infix + '{text}'


@dataclass
class Encoded:
    """One encoded example: token ids and where the label slot is."""
    token_ids: List[int]
    slot: int  # index of {mask} in token_ids
    text_positions: List[int]  # indices of the text's own tokens
    prompt_positions: List[int] = field(default_factory=list)


class Template:
    """Turns texts into token ids with prompt tokens and a label slot.

    Every sequence starts with `[CLS]`; the kind (`'mlm'` or `'lm'`, or the older
    names `'bert'`/`'gpt'`) fills the slot and closes the sequence.
    """

    def __init__(self, tokenizer, kind='mlm', pattern_text: Optional[str] = None,
                 label_words: Sequence[str] = DEFAULT_LABEL_WORDS,
                 prompt_ids: Optional[Sequence[int]] = None, maxlen: int = 128):
        try:
            self.kind: TemplateKind = get_kind(kind)
        except ValueError as e:
            raise TemplateError(str(e)) from None
        self.tokenizer, self.maxlen = tokenizer, maxlen
        self.pattern = pattern_text or self.kind.default_pattern
        pieces = PIECE.findall(self.pattern)
        if pieces.count('{mask}') != 1 or pieces.count('{text}') != 1:
            raise TemplateError('template %r needs exactly one {mask} and one {text}' % self.pattern)
        problem = self.kind.check_pattern(self.pattern)
        if problem:
            raise TemplateError('%s: %r' % (problem, self.pattern))
        n_prompts = pieces.count('{p}')
        self.prompt_ids = list(prompt_ids) if prompt_ids is not None else list(range(1, n_prompts + 1))
        if len(self.prompt_ids) != n_prompts:
            raise TemplateError('template has %d {p} but %d prompt ids were given'
                                % (n_prompts, len(self.prompt_ids)))
        for i in self.prompt_ids:
            if not 0 < i < tokenizer._vocab_size:
                raise TemplateError('prompt id %d is outside the vocabulary' % i)
            token = tokenizer.id_to_token(i)
            if not RESERVED.fullmatch(token):
                # a real character would be both a prompt and text, and learning it would
                # change every text that contains it
                raise TemplateError('prompt id %d is %r in the vocabulary, not a reserved '
                                    '[unusedN] token' % (i, token))
        self.label_words = list(label_words)
        if len(self.label_words) < 2:
            raise TemplateError('give at least two label words, one per class: %s' % self.label_words)
        # one token sequence per class; a masked LM reads one [MASK] per token of the longest
        self.label_tokens = [self.word_token_ids(w, 'label word') for w in self.label_words]
        if len(set(map(tuple, self.label_tokens))) != len(self.label_tokens):
            raise TemplateError('label words must be distinct: %s' % self.label_words)
        self.slot_width = max(len(t) for t in self.label_tokens)
        self._segments = self._compile()
        self.fixed_length = 1 + sum(len(ids) for piece, ids in self._segments if piece != 'text') \
            + self.slot_width + len(self.kind.end_ids(tokenizer))
        if self.fixed_length >= maxlen:
            raise TemplateError('template needs %d tokens, no room for text at maxlen %d'
                                % (self.fixed_length, maxlen))

    @property
    def num_labels(self) -> int:
        return len(self.label_words)

    @property
    def label_ids(self) -> List[int]:
        """The one token of each label word (single-token label words only)."""
        if self.slot_width != 1:
            raise TemplateError('label words %s are longer than one token' % self.label_words)
        return [t[0] for t in self.label_tokens]

    def word_token_ids(self, word: str, what: str = 'token') -> List[int]:
        """The token ids of `word`, every one in the vocabulary (never [UNK])."""
        tokens = self.tokenizer.tokenize(normalize_text(word))[1:-1]
        unknown = self.tokenizer._token_unk_id
        if not tokens:
            raise TemplateError('%s %r has no token at all' % (what, word))
        if any(t == '[UNK]' or self.tokenizer.token_to_id(t) == unknown for t in tokens):
            raise TemplateError('%s %r is not in the vocabulary (it would be [UNK]); choose a '
                                'word the vocabulary has' % (what, word))
        return [self.tokenizer.token_to_id(t) for t in tokens]

    def single_token_id(self, word: str, what: str = 'token') -> int:
        """The id of `word` if the vocabulary has it as exactly one token; never [UNK]."""
        tokens = self.word_token_ids(word, what)
        if len(tokens) != 1:
            raise TemplateError('%s %r is not exactly one token of the vocabulary (got %s)'
                                % (what, word, [self.tokenizer.id_to_token(t) for t in tokens]))
        return tokens[0]

    def _literal_ids(self, literal: str) -> List[int]:
        """Token ids of literal template text; a character the vocabulary lacks is an error."""
        ids = self.tokenizer.encode(literal)[0][1:-1]
        if self.tokenizer._token_unk_id in ids:
            raise TemplateError('template text %r has characters outside the vocabulary '
                                '(they would become [UNK])' % literal)
        return ids

    def _compile(self) -> List[Tuple[str, List[int]]]:
        """Split the pattern into ('prompt'|'mask'|'text'|'literal', ids) segments."""
        segments, prompt_iter, last = [], iter(self.prompt_ids), 0
        for m in PIECE.finditer(self.pattern):
            if m.start() > last:
                segments.append(('literal', self._literal_ids(self.pattern[last:m.start()])))
            piece = m.group()
            if piece == '{p}':
                segments.append(('prompt', [next(prompt_iter)]))
            elif piece == '{mask}':
                segments.append(('mask', []))  # filled per example: its width is the label's
            else:
                segments.append(('text', []))
            last = m.end()
        if last < len(self.pattern):
            segments.append(('literal', self._literal_ids(self.pattern[last:])))
        return segments

    def text_token_ids(self, text: str) -> List[int]:
        """Token ids of a text after `normalize_text`, the form the data loaders produce.

        Every text reaches the model through here (training, prediction, whole-word
        masking), so raw texts and loaded files are processed identically; NFKC and
        whitespace folding are idempotent, so already normalized text is unchanged.
        """
        return self.tokenizer.encode(normalize_text(text))[0][1:-1]

    def word_pieces(self, text: str) -> Tuple[List[int], np.ndarray]:
        """Token ids of `text` and the index of the jieba word of each (whole-word masking).

        jieba cuts the text the model sees, the normalized one, as `encode` does.
        """
        import jieba
        words = jieba.lcut(normalize_text(text))
        return word_ids_of([self.text_token_ids(w) for w in words])

    def encode(self, text, label: Optional[int] = None) -> Encoded:
        """Token ids of `text` (a string or its token ids) in the template.

        The text is cut from the right so that the template always survives whole.
        The slot is `slot_width` [MASK]s in a masked-LM template; a causal-LM template
        holds the label word there, or leaves the slot off with `label=None`.
        """
        text_ids = self.text_token_ids(text) if isinstance(text, str) else list(text)
        text_ids = text_ids[:self.maxlen - self.fixed_length]
        ids = [self.tokenizer._token_start_id]
        slot, text_positions, prompt_positions = -1, [], []
        for piece, seg in self._segments:
            if piece == 'text':
                text_positions = list(range(len(ids), len(ids) + len(text_ids)))
                ids.extend(text_ids)
            elif piece == 'mask':
                slot = len(ids)
                ids.extend(self.kind.slot_ids(self.tokenizer, None if label is None
                                              else self.label_tokens[label], self.slot_width))
            else:
                if piece == 'prompt':
                    prompt_positions.append(len(ids))
                ids.extend(seg)
        ids.extend(self.kind.end_ids(self.tokenizer))
        return Encoded(ids, slot, text_positions, prompt_positions)

    def prediction_position(self, encoded: Encoded) -> int:
        """Where the label word's distribution is read from the model output."""
        return self.kind.read_position(encoded)

    def config(self) -> dict:
        return {'kind': self.kind.name, 'pattern': self.pattern, 'label_words': self.label_words,
                'prompt_ids': self.prompt_ids, 'maxlen': self.maxlen}


def pad(sequences: Sequence[Sequence[int]], length: Optional[int] = None) -> np.ndarray:
    """Right-pad with 0 ([PAD]) to the longest sequence (dynamic padding) or `length`."""
    length = length or max(len(s) for s in sequences)
    out = np.zeros((len(sequences), length), dtype='int32')
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s[:length]
    return out
