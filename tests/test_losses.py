"""The masked loss ignores padding, GPT targets are shifted, auxiliary masking has BERT's statistics."""
import os

import numpy as np
import pytest
import tensorflow as tf
from bert4keras.tokenizers import Tokenizer

from conftest import write_tiny_vocab
from ptuning_tf import Template
from ptuning_tf.losses import choose_masked, corrupt, lm_example, masked_crossentropy, mlm_example, word_tokenize

LONG_TEXT = '质量好价格便宜服务很好我喜欢' * 8


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    return Tokenizer(write_tiny_vocab(os.path.join(str(tmp_path_factory.mktemp('v')), 'vocab.txt')))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_masked_crossentropy_averages_over_nonzero_targets_only():
    rng = np.random.RandomState(0)
    logits = rng.randn(2, 5, 7).astype('float32')
    targets = np.array([[0, 3, 0, 6, 0], [2, 0, 0, 0, 0]])
    # by hand: mean of -log p(target) over the three positions with a target
    expected = -np.mean([_log_softmax(logits[0, 1])[3], _log_softmax(logits[0, 3])[6],
                         _log_softmax(logits[1, 0])[2]])
    assert float(masked_crossentropy(targets, logits)) == pytest.approx(expected, rel=1e-5)
    # not the mean over all ten positions (padding counted as class 0)
    all_positions = -np.mean(np.take_along_axis(_log_softmax(logits), targets[..., None], -1))
    assert abs(all_positions - expected) > 1e-2
    # changing logits where the target is 0 (padding) changes nothing
    logits2 = logits.copy()
    logits2[targets == 0] = rng.randn(int((targets == 0).sum()), 7) * 10
    assert float(masked_crossentropy(targets, logits2)) == pytest.approx(expected, rel=1e-5)
    # no target anywhere: 0, not NaN
    assert float(masked_crossentropy(np.zeros((1, 3)), rng.randn(1, 3, 7).astype('float32'))) == 0.0


def test_masked_crossentropy_gradient_is_zero_at_padding():
    rng = np.random.RandomState(1)
    logits = tf.Variable(rng.randn(2, 4, 6).astype('float32'))
    targets = np.array([[1, 0, 5, 0], [0, 0, 0, 2]])
    with tf.GradientTape() as tape:
        loss = masked_crossentropy(targets, logits)
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(grad[targets == 0] == 0)
    assert np.all(np.abs(grad[targets != 0]).sum(-1) > 0)
    # d(loss)/d(logits) at a target position is (softmax - onehot) / count
    p = np.exp(_log_softmax(logits.numpy()[0, 0]))
    onehot = np.eye(6)[1]
    np.testing.assert_allclose(grad[0, 0], (p - onehot) / 3, atol=1e-6)


def test_gpt_targets_are_shifted_by_one(tokenizer):
    t = Template(tokenizer, 'gpt', maxlen=32)
    e = t.encode('质量很好', label=1)
    inputs, targets = lm_example(t, e, full_sequence=True)
    assert inputs == e.token_ids and len(targets) == len(inputs)
    prompts = set(e.prompt_positions)
    for i in range(len(inputs) - 1):
        # position i predicts token i+1, except the free prompt parameters
        assert targets[i] == (0 if i + 1 in prompts else inputs[i + 1])
    assert targets[-1] == 0 and targets[e.slot - 1] == tokenizer.token_to_id('很')
    # the text is predicted from the last prompt before it on: [CLS] u1..u4 质 量 很 好 ...
    assert targets[4:8] == [tokenizer.token_to_id(c) for c in '质量很好']
    assert targets[:4] == [0, 0, 0, 0]
    _, label_only = lm_example(t, e, full_sequence=False)
    assert [i for i, v in enumerate(label_only) if v] == [e.slot - 1]
    assert label_only[e.slot - 1] == tokenizer.token_to_id('很')
    _, other = lm_example(t, t.encode('质量很好', label=0), full_sequence=False)
    assert other[e.slot - 1] == tokenizer.token_to_id('不')


def test_mlm_example_label_at_mask_and_no_aux(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=32)
    e = t.encode('质量很好')
    for label, word in ((0, '不'), (1, '很')):
        inputs, targets = mlm_example(t, e, label, rng=None)
        assert inputs == e.token_ids and [i for i, v in enumerate(targets) if v] == [e.slot]
        assert targets[e.slot] == tokenizer.token_to_id(word)


def test_auxiliary_masking_statistics(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=128)
    e = t.encode(LONG_TEXT)
    vocab_size = tokenizer._vocab_size
    text = set(e.text_positions)
    special = {0, len(e.token_ids) - 1}
    assert len(text) > 100 and e.token_ids[0] == tokenizer._token_start_id
    rng = np.random.RandomState(0)
    n_text, chosen, as_mask, kept, random_token = 0, 0, 0, 0, 0
    for _ in range(300):
        inputs, targets = mlm_example(t, e, 1, rng)
        n_text += len(e.text_positions)
        assert targets[e.slot] == tokenizer.token_to_id('很') and inputs[e.slot] == tokenizer._token_mask_id
        assert [inputs[p] for p in e.prompt_positions] == list(range(1, 9))
        assert [inputs[p] for p in special] == [e.token_ids[p] for p in special]
        for p, target in enumerate(targets):
            if p == e.slot:
                continue
            if not target:  # not chosen: the input is untouched
                assert inputs[p] == e.token_ids[p]
                continue
            assert p in text and target == e.token_ids[p]  # never prompt/label/special
            chosen += 1
            if inputs[p] == tokenizer._token_mask_id:
                as_mask += 1
            elif inputs[p] == e.token_ids[p]:
                kept += 1
            else:
                random_token += 1
                assert 104 <= inputs[p] < vocab_size  # a normal token, not [unusedN]/special
    assert chosen / n_text == pytest.approx(0.15, abs=0.01)
    assert as_mask / chosen == pytest.approx(0.8, abs=0.02)
    # the random 10% can draw the original token back (1 in ~85 normal tokens)
    assert kept / chosen == pytest.approx(0.1 + 0.1 / (vocab_size - 104), abs=0.02)
    assert random_token / chosen == pytest.approx(0.1 - 0.1 / (vocab_size - 104), abs=0.02)


def test_choose_masked_rate_and_seed():
    positions = list(range(10, 210))
    picks = [choose_masked(positions, np.random.RandomState(s)) for s in range(50)]
    rate = sum(len(p) for p in picks) / (50 * len(positions))
    assert rate == pytest.approx(0.15, abs=0.015)
    assert all(set(p) <= set(positions) for p in picks)
    assert choose_masked(positions, np.random.RandomState(7)) == choose_masked(positions, np.random.RandomState(7))
    assert choose_masked(positions, np.random.RandomState(0), rate=0.0) == []
    assert choose_masked(positions, np.random.RandomState(0), rate=1.0) == positions


def test_random_replacements_are_normal_tokens():
    rng = np.random.RandomState(1)
    original = list(range(104, 204)) + [5, 6]
    inputs, targets = corrupt(original, list(range(100)), rng, 103, 300)
    replaced = [x for x, orig in zip(inputs, original) if x not in (103, orig)]
    assert replaced and all(104 <= x < 300 for x in replaced)
    assert targets == list(range(104, 204)) + [0, 0]
    assert inputs[100:] == [5, 6]  # positions not chosen stay as they were


def test_whole_word_masking_masks_whole_words(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=128)
    text = '质量好价格便宜服务很好我喜欢'
    ids, word_ids = word_tokenize(t, text)
    assert ids == t.text_token_ids(text)  # the same tokens, only grouped
    assert word_ids == sorted(word_ids) and len(set(word_ids)) < len(ids)  # some words span tokens
    rng = np.random.RandomState(0)
    positions = list(range(len(ids)))
    for _ in range(50):
        chosen = set(choose_masked(positions, rng, 0.3, word_ids))
        for w in set(word_ids):
            members = {p for p in positions if word_ids[p] == w}
            assert members <= chosen or not members & chosen


def test_whole_word_masking_in_training_examples(tokenizer):
    import jieba
    t = Template(tokenizer, 'bert', maxlen=128)
    text = '质量好价格便宜服务很好我喜欢送货快'
    ids, word_ids = word_tokenize(t, text)
    words = jieba.lcut(text)
    e = t.encode(ids)
    rng = np.random.RandomState(3)
    multi_char_masked, picked_words, draws = 0, 0, 400
    for _ in range(draws):
        _, targets = mlm_example(t, e, 0, rng, rate=0.15, word_ids=word_ids)
        chosen_words = {word_ids[i] for i, p in enumerate(e.text_positions) if targets[p]}
        picked_words += len(chosen_words)
        for w in chosen_words:
            span = [p for i, p in enumerate(e.text_positions) if word_ids[i] == w]
            assert all(targets[p] for p in span)  # the whole jieba word is a target
            assert ''.join(tokenizer.id_to_token(targets[p]) for p in span) == words[w]
            multi_char_masked += len(span) > 1
    assert multi_char_masked > 0
    assert picked_words / (draws * len(words)) == pytest.approx(0.15, abs=0.03)  # rate per word
