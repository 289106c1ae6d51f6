"""Template kinds and the one loss: padding ignored, causal targets shifted, BERT's masking statistics
in classification and pretraining alike."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import log_softmax
from ptuning_tf import Template
from ptuning_tf.kinds import LM, MLM, LossOptions, choose, corrupt, get_kind
from ptuning_tf.losses import masked_crossentropy

LONG_TEXT = '质量好价格便宜服务很好我喜欢' * 8


@pytest.fixture(scope='module')
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


def test_masked_crossentropy_averages_over_nonzero_targets_only():
    rng = np.random.RandomState(0)
    logits = rng.randn(2, 5, 7).astype('float32')
    targets = np.array([[0, 3, 0, 6, 0], [2, 0, 0, 0, 0]])
    # by hand: mean of -log p(target) over the three positions with a target
    expected = -np.mean([log_softmax(logits[0, 1])[3], log_softmax(logits[0, 3])[6],
                         log_softmax(logits[1, 0])[2]])
    assert float(masked_crossentropy(targets, logits)) == pytest.approx(expected, rel=1e-5)
    # not the mean over all ten positions (padding counted as class 0)
    all_positions = -np.mean(np.take_along_axis(log_softmax(logits), targets[..., None], -1))
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
    p = np.exp(log_softmax(logits.numpy()[0, 0]))
    onehot = np.eye(6)[1]
    np.testing.assert_allclose(grad[0, 0], (p - onehot) / 3, atol=1e-6)


def _example(kind, template, text, label, rng=None, **loss):
    return get_kind(kind).training_example(template, text, label, rng or np.random.RandomState(0),
                                           LossOptions(**loss))


def test_kinds_have_names_and_the_older_aliases():
    assert get_kind('mlm') is get_kind('bert') is MLM and get_kind('lm') is get_kind('gpt') is LM
    assert not MLM.causal and LM.causal
    ids = np.array([[101, 5, 6]])
    assert len(MLM.inputs(ids)) == 2 and np.all(MLM.inputs(ids)[1] == 0) and LM.inputs(ids)[0] is ids
    with pytest.raises(ValueError, match="kind must be one of"):
        get_kind('t5')


def test_causal_targets_are_shifted_by_one(tokenizer):
    t = Template(tokenizer, 'lm', maxlen=32)
    e = t.encode('质量很好', label=1)
    inputs, targets = _example('lm', t, '质量很好', 1)
    assert inputs == e.token_ids and len(targets) == len(inputs)
    prompts = set(e.prompt_positions)
    for i in range(len(inputs) - 1):
        # position i predicts token i+1, except the free prompt parameters
        assert targets[i] == (0 if i + 1 in prompts else inputs[i + 1])
    assert targets[-1] == 0 and targets[e.slot - 1] == tokenizer.token_to_id('很')
    # the text is predicted from the last prompt before it on: [CLS] u1..u4 质 量 很 好 ...
    assert targets[4:8] == [tokenizer.token_to_id(c) for c in '质量很好']
    assert targets[:4] == [0, 0, 0, 0]
    _, label_only = _example('lm', t, '质量很好', 1, aux_loss=False)
    assert [i for i, v in enumerate(label_only) if v] == [e.slot - 1]
    assert label_only[e.slot - 1] == tokenizer.token_to_id('很')
    _, other = _example('lm', t, '质量很好', 0, aux_loss=False)
    assert other[e.slot - 1] == tokenizer.token_to_id('不')


def test_masked_example_label_at_mask_and_no_aux(tokenizer):
    t = Template(tokenizer, 'mlm', maxlen=32)
    e = t.encode('质量很好')
    for label, word in ((0, '不'), (1, '很')):
        inputs, targets = _example('mlm', t, '质量很好', label, aux_loss=False)
        assert inputs == e.token_ids and [i for i, v in enumerate(targets) if v] == [e.slot]
        assert targets[e.slot] == tokenizer.token_to_id(word)


def test_auxiliary_masking_statistics(tokenizer):
    t = Template(tokenizer, 'mlm', maxlen=128)
    e = t.encode(LONG_TEXT)
    vocab_size = tokenizer._vocab_size
    text = set(e.text_positions)
    special = {0, len(e.token_ids) - 1}
    assert len(text) > 100 and e.token_ids[0] == tokenizer._token_start_id
    rng = np.random.RandomState(0)
    n_text, chosen, as_mask, kept, random_token = 0, 0, 0, 0, 0
    for _ in range(300):
        inputs, targets = _example('mlm', t, LONG_TEXT, 1, rng)
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
    # the rate is an option of the loss
    rates = [np.count_nonzero(_example('mlm', t, LONG_TEXT, 1, rng, mask_rate=0.4)[1]) - 1
             for _ in range(100)]
    assert np.mean(rates) / len(text) == pytest.approx(0.4, abs=0.02)


def test_choose_rate_and_seed():
    candidates = np.zeros(220, bool)
    candidates[10:210] = True
    picks = [choose(candidates, np.random.RandomState(s), 0.15) for s in range(50)]
    assert np.mean([p.sum() for p in picks]) / candidates.sum() == pytest.approx(0.15, abs=0.015)
    assert all(not (p & ~candidates).any() for p in picks)
    np.testing.assert_array_equal(choose(candidates, np.random.RandomState(7), 0.15),
                                  choose(candidates, np.random.RandomState(7), 0.15))
    assert not choose(candidates, np.random.RandomState(0), 0.0).any()
    np.testing.assert_array_equal(choose(candidates, np.random.RandomState(0), 1.0), candidates)


def test_random_replacements_are_normal_tokens():
    rng = np.random.RandomState(1)
    original = np.array(list(range(104, 204)) + [5, 6])
    chosen = np.arange(102) < 100
    inputs, targets = corrupt(original, chosen, rng, 103, 300)
    replaced = [x for x, orig in zip(inputs, original) if x not in (103, orig)]
    assert replaced and all(104 <= x < 300 for x in replaced)
    assert targets.tolist() == list(range(104, 204)) + [0, 0]
    assert inputs[100:].tolist() == [5, 6]  # positions not chosen stay as they were


def test_whole_word_masking_masks_whole_words(tokenizer):
    t = Template(tokenizer, 'mlm', maxlen=128)
    text = '质量好价格便宜服务很好我喜欢'
    ids, word_ids = t.word_pieces(text)
    assert ids == t.text_token_ids(text)  # the same tokens, only grouped
    assert list(word_ids) == sorted(word_ids) and len(set(word_ids)) < len(ids)  # words span tokens
    rng = np.random.RandomState(0)
    candidates = np.ones(len(ids), bool)
    for _ in range(50):
        chosen = choose(candidates, rng, 0.3, word_ids)
        for w in set(word_ids.tolist()):
            members = chosen[word_ids == w]
            assert members.all() or not members.any()


def test_whole_word_masking_in_training_examples(tokenizer):
    import jieba
    t = Template(tokenizer, 'mlm', maxlen=128)
    text = '质量好价格便宜服务很好我喜欢送货快'
    ids, word_ids = t.word_pieces(text)
    words = jieba.lcut(text)
    e = t.encode(ids)
    rng = np.random.RandomState(3)
    multi_char_masked, picked_words, draws = 0, 0, 400
    for _ in range(draws):
        _, targets = _example('mlm', t, text, 0, rng, whole_word_mask=True)
        chosen_words = {word_ids[i] for i, p in enumerate(e.text_positions) if targets[p]}
        picked_words += len(chosen_words)
        for w in chosen_words:
            span = [p for i, p in enumerate(e.text_positions) if word_ids[i] == w]
            assert all(targets[p] for p in span)  # the whole jieba word is a target
            assert ''.join(tokenizer.id_to_token(targets[p]) for p in span) == words[w]
            multi_char_masked += len(span) > 1
    assert multi_char_masked > 0
    assert picked_words / (draws * len(words)) == pytest.approx(0.15, abs=0.03)  # rate per word


def test_pretraining_masking_statistics(tokenizer):
    """The corpus rows get the same 80/10/10 rule as a classifier's text: one function."""
    class Vocab:
        _vocab_size, _token_mask_id = 1000, 103
    rng = np.random.RandomState(0)
    batch = rng.randint(104, Vocab._vocab_size, size=(400, 128)).astype('int32')
    batch[:, 0], batch[:, 64], batch[:, -1] = 101, 102, 102
    batch[:40, 90:] = 0  # padding
    batch[:, 5] = rng.randint(1, 101, size=400)  # [unused*] and [UNK]: not normal tokens either
    inputs, targets = MLM.pretraining_example(batch, np.random.RandomState(1), Vocab)
    chosen = targets != 0
    normal = batch >= 104
    assert not chosen[~normal].any()  # never [PAD]/[CLS]/[SEP] (nor other specials)
    assert chosen.sum() / normal.sum() == pytest.approx(0.15, abs=0.005)
    np.testing.assert_array_equal(targets[chosen], batch[chosen])  # the original ids
    picked, original = inputs[chosen], batch[chosen]
    as_mask, kept = picked == 103, picked == original
    randomised = ~as_mask & ~kept
    assert as_mask.mean() == pytest.approx(0.8, abs=0.015)
    assert randomised.mean() == pytest.approx(0.1, abs=0.01)
    assert kept.mean() == pytest.approx(0.1, abs=0.01)
    assert (picked[randomised] >= 104).all() and (picked[randomised] < Vocab._vocab_size).all()
    np.testing.assert_array_equal(inputs[~chosen], batch[~chosen])  # the rest untouched
    np.testing.assert_array_equal(batch[:, 0], 101)  # the input batch is not modified in place
    _, targets30 = MLM.pretraining_example(batch, np.random.RandomState(1), Vocab, 0.3)
    assert (targets30 != 0).sum() / normal.sum() == pytest.approx(0.3, abs=0.01)
    again = MLM.pretraining_example(batch, np.random.RandomState(1), Vocab)
    for a, b in zip(again, (inputs, targets)):
        np.testing.assert_array_equal(a, b)
    # the causal kind: the next token at every position, padding never a target
    rows, next_tokens = LM.pretraining_example(batch, rng, Vocab)
    assert rows is batch
    np.testing.assert_array_equal(next_tokens[:, :-1], batch[:, 1:])
    assert (next_tokens[:, -1] == 0).all() and (next_tokens[:40, 89:] == 0).all()
