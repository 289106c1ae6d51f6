"""Label words of several characters: one [MASK] per token, a class scored by the mean log-probability
of its tokens (masked LM) or of its continuation (causal LM); one-token words keep the old verbalizer."""

import numpy as np
import pytest

from conftest import log_softmax
from ptuning_tf import PromptClassifier, Template, TemplateError, load, save
from ptuning_tf.kinds import LM, MLM, LossOptions

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜']
EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜')] + [(t, 0) for t in ('太差了', '失望')] + \
    [(t, 2) for t in ('一般', '还可以')]
WORDS = ('失望', '满意', '还')  # two tokens, two tokens, one token


@pytest.fixture(scope='module')
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


def test_the_masked_slot_has_one_mask_per_token_of_the_longest_word(tokenizer):
    t = Template(tokenizer, 'mlm', '{p}{mask}{p}{text}', label_words=WORDS, prompt_ids=[1, 2], maxlen=32)
    assert t.slot_width == 2 and [len(w) for w in t.label_tokens] == [2, 2, 1]
    e = t.encode('好')
    assert e.token_ids[e.slot:e.slot + 2] == [tokenizer._token_mask_id] * 2
    assert t.fixed_length == len(t.encode('').token_ids)  # [CLS] u1 [MASK] [MASK] u2 [SEP]
    inputs, targets = MLM.training_example(t, '好', 0, np.random.RandomState(0), LossOptions(aux_loss=False))
    assert targets[e.slot:e.slot + 2] == t.label_tokens[0] and sum(1 for v in targets if v) == 2
    _, short = MLM.training_example(t, '好', 2, np.random.RandomState(0), LossOptions(aux_loss=False))
    assert short[e.slot] == t.label_tokens[2][0] and short[e.slot + 1] == 0  # no target after a short word
    with pytest.raises(TemplateError, match='longer than one token'):
        t.label_ids


def test_the_causal_template_predicts_each_token_of_the_word(tokenizer):
    t = Template(tokenizer, 'lm', label_words=WORDS, maxlen=32)
    e = t.encode('好', label=1)
    assert e.token_ids[e.slot:] == t.label_tokens[1]  # the word itself ends the sequence
    _, targets = LM.training_example(t, '好', 1, None, LossOptions(aux_loss=False))
    assert [i for i, v in enumerate(targets) if v] == [e.slot - 1, e.slot]
    assert [targets[e.slot - 1], targets[e.slot]] == t.label_tokens[1]
    assert t.encode('好').token_ids == e.token_ids[:e.slot]  # prediction leaves the slot off


@pytest.mark.parametrize('words, message', [(('失望', '失望'), 'must be distinct'),
                                            (('好', ''), "label word '' has no token"),
                                            (('好',), 'at least two label words')])
def test_bad_label_words(tokenizer, words, message):
    with pytest.raises(TemplateError, match=message):
        Template(tokenizer, 'mlm', label_words=words, maxlen=32)


def test_masked_scores_are_the_mean_log_probability_of_the_tokens(tiny_bert_dir):
    clf = PromptClassifier.build(tiny_bert_dir, label_words=WORDS, maxlen=32)
    clf.set_state({'rows': np.random.RandomState(3).randn(8, 32).astype('float32')})
    probs = clf.predict_proba(TEXTS)
    for text, p in zip(TEXTS, probs):
        e = clf.template.encode(text)
        ids = np.array([e.token_ids])
        logp = log_softmax(clf.model.predict([ids, np.zeros_like(ids)], verbose=0)[0])
        scores = [np.mean([logp[e.slot + i, tok] for i, tok in enumerate(word)])
                  for word in clf.template.label_tokens]
        np.testing.assert_allclose(p, np.exp(scores) / np.exp(scores).sum(), atol=1e-5)


def test_causal_scores_are_the_mean_log_probability_of_each_continuation(tiny_gpt_dir):
    clf = PromptClassifier.build(tiny_gpt_dir, kind='lm', label_words=WORDS, maxlen=32)
    clf.set_state({'rows': np.random.RandomState(4).randn(8, 32).astype('float32')})
    assert clf.head.per_label
    probs = clf.predict_proba(TEXTS)
    for text, p in zip(TEXTS, probs):
        scores = []
        for j, word in enumerate(clf.template.label_tokens):
            e = clf.template.encode(text, j)
            logp = log_softmax(clf.model.predict(np.array([e.token_ids]), verbose=0)[0])
            scores.append(np.mean([logp[e.slot - 1 + i, tok] for i, tok in enumerate(word)]))
        np.testing.assert_allclose(p, np.exp(scores) / np.exp(scores).sum(), atol=1e-5)


def test_one_token_words_keep_the_label_word_logits(tiny_bert_dir):
    clf = PromptClassifier.build(tiny_bert_dir, label_words=('差', '好'), maxlen=32)
    e = clf.template.encode(TEXTS[0])
    ids = np.array([e.token_ids])
    logits = clf.model.predict([ids, np.zeros_like(ids)], verbose=0)[0, e.slot, clf.template.label_ids]
    np.testing.assert_allclose(clf.predict_proba(TEXTS[:1])[0], np.exp(logits) / np.exp(logits).sum(),
                               atol=1e-6)


@pytest.mark.parametrize('kind', ['mlm', 'lm'])
def test_three_classes_of_long_words_train_save_and_reload(kind, tiny_bert_dir, tiny_gpt_dir, tmp_path):
    clf = PromptClassifier.build(tiny_bert_dir if kind == 'mlm' else tiny_gpt_dir, kind=kind,
                                 label_words=WORDS, maxlen=32)
    before = clf.state()['rows'].copy()
    result = clf.fit(EXAMPLES, EXAMPLES, epochs=2, batch_size=3, learning_rate=5e-2, verbose=0,
                     log=lambda m: None)
    assert 0 <= result['valid_acc'] <= 1 and not np.array_equal(clf.state()['rows'], before)
    fresh = load(save(clf, str(tmp_path / kind)), tiny_bert_dir if kind == 'mlm' else tiny_gpt_dir)
    assert fresh.template.label_words == list(WORDS)
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), clf.predict_proba(TEXTS))
