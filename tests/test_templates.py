"""Templates put [MASK], prompt tokens and label words where they must, also when truncating."""
import os

import pytest
from bert4keras.tokenizers import Tokenizer

from conftest import write_tiny_vocab
from ptuning_tf import Template, TemplateError, pattern

CLS, SEP, MASK = 101, 102, 103


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    path = write_tiny_vocab(os.path.join(str(tmp_path_factory.mktemp('vocab')), 'vocab.txt'))
    return Tokenizer(path, do_lower_case=True)


@pytest.mark.parametrize('text', ['很好', '质量好价格便宜' * 20])
def test_bert_template_layout(tokenizer, text):
    t = Template(tokenizer, 'bert', maxlen=32)
    e = t.encode(text)
    ids = e.token_ids
    assert ids[0] == CLS and ids[-1] == SEP
    assert ids[1:5] == [1, 2, 3, 4] and ids[5] == MASK and ids[6:10] == [5, 6, 7, 8]
    assert e.slot == 5 and t.prediction_position(e) == 5
    assert e.prompt_positions == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [ids[p] for p in e.text_positions] == t.text_token_ids(text)[:len(e.text_positions)]
    assert len(ids) <= 32
    if len(text) > 30:
        assert len(ids) == 32  # truncated: the text is cut, the template is intact


@pytest.mark.parametrize('text', ['很好', '质量好价格便宜' * 20])
def test_gpt_template_puts_label_word_last(tokenizer, text):
    t = Template(tokenizer, 'gpt', maxlen=32)
    e = t.encode(text, label=1)
    ids = e.token_ids
    label_id = tokenizer.token_to_id('很')
    assert ids[0] == CLS and ids[1:5] == [1, 2, 3, 4]
    assert ids[-5:-1] == [5, 6, 7, 8] and ids[-1] == label_id and e.slot == len(ids) - 1
    assert len(ids) <= 32
    # at prediction time the slot is left off and read from the token before it
    p = t.encode(text)
    assert p.token_ids == ids[:-1] and t.prediction_position(p) == len(ids) - 2


def test_prompt_counts_are_parameters(tokenizer):
    t = Template(tokenizer, 'bert', pattern(prefix=2, infix=6), maxlen=32)
    e = t.encode('很好')
    assert e.token_ids[1:3] == [1, 2] and e.token_ids[3] == MASK and e.token_ids[4:10] == list(range(3, 9))
    g = Template(tokenizer, 'gpt', pattern(prefix=0, infix=3, kind='gpt'), prompt_ids=[7, 8, 9])
    assert g.encode('很好', 0).token_ids[-4:-1] == [7, 8, 9]


def test_pet_template_with_literal_text(tokenizer):
    t = Template(tokenizer, 'bert', '{mask}满意。{text}', maxlen=32)
    e = t.encode('很好')
    assert e.slot == 1 and e.token_ids[1] == MASK and t.prompt_ids == []
    assert e.token_ids[2:5] == [tokenizer.token_to_id(c) for c in '满意。']


@pytest.mark.parametrize('words', [('不', '非常'), ('不', '龘'), ('很', '很')])
def test_label_words_must_be_single_distinct_tokens(tokenizer, words):
    with pytest.raises(TemplateError):
        Template(tokenizer, 'bert', label_words=words)


def test_bad_templates_raise(tokenizer):
    with pytest.raises(TemplateError, match='exactly one'):
        Template(tokenizer, 'bert', '{p}{text}')
    with pytest.raises(TemplateError, match='end with'):
        Template(tokenizer, 'gpt', '{p}{mask}{text}')
    with pytest.raises(TemplateError, match='prompt ids'):
        Template(tokenizer, 'bert', prompt_ids=[1, 2])
    with pytest.raises(TemplateError, match='outside'):
        Template(tokenizer, 'bert', prompt_ids=[1, 2, 3, 4, 5, 6, 7, 5000])
    with pytest.raises(TemplateError, match='no room'):
        Template(tokenizer, 'bert', maxlen=10)
