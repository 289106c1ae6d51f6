"""The masked loss ignores padding, GPT targets are shifted, auxiliary masking has BERT's statistics."""
import os

import numpy as np
import pytest
from bert4keras.tokenizers import Tokenizer

from conftest import write_tiny_vocab
from ptuning_tf import Template
from ptuning_tf.losses import choose_masked, corrupt, lm_example, masked_crossentropy, mlm_example, word_tokenize


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
    expected = -np.mean([_log_softmax(logits[b, t])[targets[b, t]]
                         for b, t in zip(*np.nonzero(targets))])
    assert float(masked_crossentropy(targets, logits)) == pytest.approx(expected, rel=1e-5)
    # changing logits where the target is 0 (padding) changes nothing
    logits2 = logits.copy()
    logits2[targets == 0] = rng.randn(int((targets == 0).sum()), 7) * 10
    assert float(masked_crossentropy(targets, logits2)) == pytest.approx(expected, rel=1e-5)
    assert float(masked_crossentropy(np.zeros((1, 3)), rng.randn(1, 3, 7).astype('float32'))) == 0.0


def test_gpt_targets_are_shifted_by_one(tokenizer):
    t = Template(tokenizer, 'gpt', maxlen=32)
    e = t.encode('质量很好', label=1)
    inputs, targets = lm_example(t, e, full_sequence=True)
    assert inputs == e.token_ids
    prompts = set(e.prompt_positions)
    for i in range(len(inputs) - 1):
        assert targets[i] == (0 if i + 1 in prompts else inputs[i + 1])
    assert targets[-1] == 0 and targets[e.slot - 1] == tokenizer.token_to_id('很')
    _, label_only = lm_example(t, e, full_sequence=False)
    assert [i for i, v in enumerate(label_only) if v] == [e.slot - 1]


def test_mlm_example_label_at_mask_and_no_aux(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=32)
    e = t.encode('质量很好')
    inputs, targets = mlm_example(t, e, 0, rng=None)
    assert inputs == e.token_ids and [i for i, v in enumerate(targets) if v] == [e.slot]
    assert targets[e.slot] == tokenizer.token_to_id('不')


def test_auxiliary_masking_statistics(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=128)
    e = t.encode('质量好价格便宜服务很好我喜欢' * 8)
    rng = np.random.RandomState(0)
    n_text, chosen, as_mask, kept, outside = 0, 0, 0, 0, 0
    for _ in range(300):
        inputs, targets = mlm_example(t, e, 1, rng)
        n_text += len(e.text_positions)
        for p, target in enumerate(targets):
            if not target or p == e.slot:
                continue
            chosen += 1
            outside += p not in e.text_positions
            as_mask += inputs[p] == tokenizer._token_mask_id
            kept += inputs[p] == e.token_ids[p]
        assert inputs[e.slot] == tokenizer._token_mask_id
        assert [inputs[p] for p in e.prompt_positions] == list(range(1, 9))
    assert outside == 0
    assert chosen / n_text == pytest.approx(0.15, abs=0.01)
    assert as_mask / chosen == pytest.approx(0.8, abs=0.02)
    assert kept / chosen == pytest.approx(0.1 + 0.1 / 100, abs=0.02)


def test_random_replacements_are_normal_tokens():
    rng = np.random.RandomState(1)
    inputs, targets = corrupt(list(range(104, 204)), list(range(100)), rng, 103, 300)
    replaced = [x for x, orig in zip(inputs, range(104, 204)) if x not in (103, orig)]
    assert replaced and all(104 <= x < 300 for x in replaced)
    assert targets == list(range(104, 204))


def test_whole_word_masking_masks_whole_words(tokenizer):
    t = Template(tokenizer, 'bert', maxlen=128)
    ids, word_ids = word_tokenize(t, '质量好价格便宜服务很好我喜欢')
    assert len(ids) == len(word_ids) == len(t.text_token_ids('质量好价格便宜服务很好我喜欢'))
    rng = np.random.RandomState(0)
    positions = list(range(len(ids)))
    for _ in range(50):
        chosen = set(choose_masked(positions, rng, 0.3, word_ids))
        for w in set(word_ids):
            members = {p for p in positions if word_ids[p] == w}
            assert members <= chosen or not members & chosen
