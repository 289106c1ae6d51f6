"""Templates put [MASK], prompt tokens and label words where they must, also when truncating."""
import os

import numpy as np
import pytest
from bert4keras.tokenizers import Tokenizer

from conftest import write_tiny_vocab
from ptuning_tf import Template, TemplateError, pattern
from ptuning_tf.templates import BERT_PATTERN, GPT_PATTERN, pad

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SHORT, LONG = '很好', '质量好价格便宜' * 20  # LONG has 140 tokens, far more than maxlen


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    path = write_tiny_vocab(os.path.join(str(tmp_path_factory.mktemp('vocab')), 'vocab.txt'))
    return Tokenizer(path, do_lower_case=True)


def test_tiny_vocab_layout(tokenizer):
    # the constants below rely on the real Chinese BERT layout
    assert [tokenizer.id_to_token(i) for i in (PAD, 1, 8, UNK, CLS, SEP, MASK)] == \
        ['[PAD]', '[unused1]', '[unused8]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


@pytest.mark.parametrize('text', [SHORT, LONG])
def test_bert_template_layout(tokenizer, text):
    t = Template(tokenizer, 'bert', maxlen=32)
    e = t.encode(text)
    ids = e.token_ids
    # [CLS] u1..u4 [MASK] u5..u8 text [SEP]
    assert ids[0] == CLS and ids[-1] == SEP
    assert ids[1:5] == [1, 2, 3, 4] and ids[5] == MASK and ids[6:10] == [5, 6, 7, 8]
    assert ids.count(MASK) == 1 and UNK not in ids
    assert e.slot == 5 and t.prediction_position(e) == 5
    assert e.prompt_positions == [1, 2, 3, 4, 6, 7, 8, 9]
    assert e.text_positions == list(range(10, len(ids) - 1))
    full = t.text_token_ids(text)
    if text == SHORT:
        assert ids[10:-1] == full and len(ids) == 11 + len(full)
    else:  # truncated: the text is cut from the right, the template is intact
        assert len(ids) == 32 and ids[10:-1] == full[:21]


@pytest.mark.parametrize('text', [SHORT, LONG])
def test_gpt_template_puts_label_word_last(tokenizer, text):
    t = Template(tokenizer, 'gpt', maxlen=32)
    label_ids = [tokenizer.token_to_id('不'), tokenizer.token_to_id('很')]
    assert t.label_ids == label_ids
    for label in (0, 1):
        e = t.encode(text, label=label)
        ids = e.token_ids
        # [CLS] u1..u4 text u5..u8 label-word, no [SEP]
        assert ids[0] == CLS and ids[1:5] == [1, 2, 3, 4] and SEP not in ids
        assert ids[-5:-1] == [5, 6, 7, 8] and ids[-1] == label_ids[label] and e.slot == len(ids) - 1
        assert e.prompt_positions == [1, 2, 3, 4] + list(range(len(ids) - 5, len(ids) - 1))
        assert ids[5:-5] == t.text_token_ids(text)[:len(ids) - 10]
        assert len(ids) == (32 if text == LONG else 10 + len(t.text_token_ids(text)))
    # at prediction time the slot is left off and read from the token before it (u8)
    p = t.encode(text)
    assert p.token_ids == ids[:-1] and t.prediction_position(p) == len(ids) - 2
    assert p.token_ids[t.prediction_position(p)] == 8


def test_pattern_defaults_and_counts(tokenizer):
    assert pattern() == BERT_PATTERN and pattern(kind='gpt') == GPT_PATTERN
    t = Template(tokenizer, 'bert', pattern(prefix=2, infix=6), maxlen=32)
    e = t.encode(SHORT)
    assert e.token_ids[1:3] == [1, 2] and e.token_ids[3] == MASK and e.token_ids[4:10] == list(range(3, 9))
    assert e.slot == 3 and t.prediction_position(e) == 3 and t.prompt_ids == list(range(1, 9))
    t = Template(tokenizer, 'bert', pattern(prefix=0, infix=3), maxlen=32)
    e = t.encode(SHORT)
    assert e.token_ids[:5] == [CLS, MASK, 1, 2, 3] and e.slot == 1
    # a longer template leaves less room for the text, never less for itself
    long_t = Template(tokenizer, 'bert', pattern(prefix=10, infix=10), maxlen=32)
    e = long_t.encode(LONG)
    assert len(e.token_ids) == 32 and e.token_ids[1:11] == list(range(1, 11)) and e.slot == 11
    assert len(e.text_positions) == 32 - 23  # [CLS] + 10 + [MASK] + 10 + [SEP]
    g = Template(tokenizer, 'gpt', pattern(prefix=0, infix=3, kind='gpt'), prompt_ids=[7, 8, 9])
    e = g.encode(SHORT, 0)
    assert e.token_ids[:3] == [CLS] + t.text_token_ids(SHORT)[:2]
    assert e.token_ids[-4:-1] == [7, 8, 9] and g.prediction_position(g.encode(SHORT)) == len(e.token_ids) - 2


def test_pet_template_with_literal_text(tokenizer):
    t = Template(tokenizer, 'bert', '{mask}满意。{text}', maxlen=32)
    e = t.encode('很好')
    assert e.slot == 1 and e.token_ids[1] == MASK and t.prompt_ids == []
    assert e.token_ids[2:5] == [tokenizer.token_to_id(c) for c in '满意。']
    assert e.text_positions == [5, 6]


def test_literal_text_outside_the_vocabulary_raises(tokenizer):
    with pytest.raises(TemplateError, match='outside the vocabulary'):
        Template(tokenizer, 'bert', '{mask}龘{text}')
    with pytest.raises(TemplateError, match='outside the vocabulary'):
        Template(tokenizer, 'gpt', '{p}{text}很龘{mask}')


@pytest.mark.parametrize('words, message', [
    (('不', '龘'), r"'龘' is not in the vocabulary \(it would be \[UNK\]\)"),
    (('不', '非常'), "'非常' is not in the vocabulary"),  # neither character is
    (('不', ''), 'has no token'),  # no token at all
    (('很', '很'), 'distinct'),
])
@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_label_words_must_be_in_the_vocabulary_and_distinct(tokenizer, kind, words, message):
    with pytest.raises(TemplateError, match=message):
        Template(tokenizer, kind, label_words=words)


@pytest.mark.parametrize('prompt_ids, message', [
    ([1, 2, 3, 4, 5, 6, 7, 110], "prompt id 110 is '.*' in the vocabulary"),  # a real character
    ([1, 2, 3, 4, 5, 6, 7, UNK], r'\[UNK\]'),
    ([1, 2, 3, 4, 5, 6, 7, MASK], r'\[MASK\]'),
    ([0, 2, 3, 4, 5, 6, 7, 8], 'outside the vocabulary'),  # [PAD]
    ([1, 2, 3, 4, 5, 6, 7, 5000], 'outside the vocabulary'),
])
def test_prompt_tokens_must_be_reserved_tokens(tokenizer, prompt_ids, message):
    with pytest.raises(TemplateError, match=message):
        Template(tokenizer, 'bert', prompt_ids=prompt_ids)


def test_bad_templates_raise(tokenizer):
    with pytest.raises(TemplateError, match='exactly one'):
        Template(tokenizer, 'bert', '{p}{text}')
    with pytest.raises(TemplateError, match='exactly one'):
        Template(tokenizer, 'bert', '{mask}{mask}{text}')
    with pytest.raises(TemplateError, match='end with'):
        Template(tokenizer, 'gpt', '{p}{mask}{text}')
    with pytest.raises(TemplateError, match='prompt ids'):
        Template(tokenizer, 'bert', prompt_ids=[1, 2])
    with pytest.raises(TemplateError, match='no room'):
        Template(tokenizer, 'bert', maxlen=10)
    with pytest.raises(TemplateError, match='kind'):
        Template(tokenizer, 't5')


def test_config_describes_the_template(tokenizer):
    t = Template(tokenizer, 'gpt', pattern(3, 2, 'gpt'), label_words=('差', '好'), maxlen=40)
    assert t.config() == {'kind': 'lm', 'pattern': '{p}{p}{p}{text}{p}{p}{mask}',
                          'label_words': ['差', '好'], 'prompt_ids': [1, 2, 3, 4, 5], 'maxlen': 40}
    assert t.num_labels == 2


def test_pad_is_dynamic_and_right_aligned():
    out = pad([[5, 6, 7], [8]])
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]] and out.dtype.name == 'int32'
    assert pad([[5, 6, 7]], length=2).tolist() == [[5, 6]]


# full-width digits and comma: NFKC maps them to '12' and ',' (which the tiny vocab spells
# '1', '##2' and [UNK]); left raw, '１２' would be [UNK] and '，' a different token
RAW, NORMALIZED = '质量１２个，　好', '质量12个, 好'


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_encode_normalizes_raw_text_like_the_data_loaders(tokenizer, kind):
    from ptuning_tf.data import normalize_text
    assert normalize_text(RAW) == NORMALIZED
    t = Template(tokenizer, kind, maxlen=32)
    raw, normalized = t.encode(RAW, 1), t.encode(NORMALIZED, 1)
    assert raw.token_ids == normalized.token_ids and raw.text_positions == normalized.text_positions
    assert [tokenizer.id_to_token(i) for i in t.text_token_ids(RAW)] == \
        ['质', '量', '1', '##2', '个', '[UNK]', '好']
    # normalizing is idempotent: text that was loaded (normalized) once is not changed again
    assert t.text_token_ids(normalize_text(NORMALIZED)) == t.text_token_ids(NORMALIZED)


def test_whole_word_masking_sees_the_normalized_text(tokenizer):
    t = Template(tokenizer, 'mlm', maxlen=32)
    ids, word_ids = t.word_pieces(RAW)
    assert ids == t.text_token_ids(NORMALIZED) and len(word_ids) == len(ids)


def test_predict_normalizes_raw_texts(tiny_bert_dir):
    from ptuning_tf import PromptClassifier
    clf = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    raw, normalized = clf.predict_proba(['ｈｅｌｌｏ，好', RAW]), clf.predict_proba(['hello,好', NORMALIZED])
    np.testing.assert_array_equal(raw, normalized)
