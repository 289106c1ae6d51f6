"""PromptClassifier: Keras fit with callbacks, best-valid restore, predictions, seeds."""
import random

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ptuning_tf import PromptClassifier, set_seed
from ptuning_tf.training import Evaluator

TEXTS = ['很好', '质量好价格便宜服务很好' * 3, '差', '送货快，满意，推荐', '不会再买了', '一般般吧，还可以']


@pytest.fixture(scope='module')
def clf(tiny_bert_dir):
    return PromptClassifier.build(tiny_bert_dir, maxlen=32)


def test_fit_uses_keras_callbacks_and_restores_the_best_prompt(clf, tiny_examples):
    start = clf.state()['rows']
    seen, rows_after_epoch = [], []

    def on_epoch_end(epoch, logs):
        seen.append(dict(logs))
        rows_after_epoch.append(clf.state()['rows'])
    history = keras.callbacks.History()
    callback = keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
    messages = []
    valid, test = tiny_examples[::2], tiny_examples[1::2]
    result = clf.fit(tiny_examples, valid, test, epochs=3, batch_size=4, learning_rate=5e-2,
                     callbacks=[callback, history], verbose=0, log=messages.append)
    # the standard callbacks ran inside model.fit and see the evaluator's accuracies
    assert len(seen) == 3 and history.epoch == [0, 1, 2]
    for logs in seen:
        assert {'loss', 'valid_acc', 'test_acc'} <= set(logs) and np.isfinite(logs['loss'])
        assert 0 <= logs['valid_acc'] <= 1 and 0 <= logs['test_acc'] <= 1
    assert history.history['valid_acc'] == [logs['valid_acc'] for logs in seen]
    # one report per epoch with both accuracies
    assert [h['epoch'] for h in result['history']] == [1, 2, 3]
    assert [h['valid_acc'] for h in result['history']] == history.history['valid_acc']
    assert [h['test_acc'] for h in result['history']] == history.history['test_acc']
    assert len(messages) == 3 and all('valid_acc=' in m and 'test_acc=' in m for m in messages)
    # the best-valid epoch (the first of equals) is reported and its prompt is in the model
    accs = [h['valid_acc'] for h in result['history']]
    best = accs.index(max(accs))
    assert result['epoch'] == best + 1 and result['valid_acc'] == accs[best]
    assert result['test_acc'] == result['history'][best]['test_acc'] and result['seconds'] > 0
    assert not np.array_equal(rows_after_epoch[0], start)
    np.testing.assert_array_equal(clf.state()['rows'], rows_after_epoch[best])
    assert clf.evaluate(valid) == pytest.approx(result['valid_acc'])


class _ScriptedClassifier:
    """Stands in for a classifier: scripted accuracies, the epoch number as its 'state'."""

    def __init__(self, accuracies):
        self.accuracies, self.epoch, self.restored = list(accuracies), 0, None

    def evaluate(self, examples):
        self.epoch += 1
        return self.accuracies[self.epoch - 1]

    def snapshot(self):
        return 'state after epoch %d' % self.epoch

    def restore(self, state):
        self.restored = state


def test_evaluator_keeps_and_restores_the_best_valid_state():
    stub = _ScriptedClassifier([0.5, 0.9, 0.7, 0.9])
    model = keras.Sequential()
    evaluator = Evaluator(stub, valid=[('x', 0)], log=lambda m: None)
    evaluator.set_model(model)
    for epoch in range(4):
        logs = {'loss': 1.0}
        evaluator.on_epoch_end(epoch, logs)
        assert logs['valid_acc'] == stub.accuracies[epoch] and 'test_acc' not in logs
    evaluator.on_train_end()
    assert stub.restored == 'state after epoch 2'  # a later tie does not replace the best
    assert evaluator.best == {'epoch': 2, 'loss': 1.0, 'valid_acc': 0.9, 'test_acc': None}
    assert not model.stop_training


def test_evaluator_patience_stops_training():
    stub = _ScriptedClassifier([0.5, 0.9, 0.7, 0.8])
    model = keras.Sequential()
    evaluator = Evaluator(stub, valid=[('x', 0)], patience=2, log=lambda m: None)
    evaluator.set_model(model)
    stops = []
    for epoch in range(4):
        evaluator.on_epoch_end(epoch, {})
        stops.append(bool(model.stop_training))
    assert stops == [False, False, False, True]  # two epochs without improving on epoch 2


def test_early_stopping_in_fit(clf, tiny_examples):
    rows = clf.state()['rows']
    result = clf.fit(tiny_examples, tiny_examples, epochs=30, batch_size=4, learning_rate=1e-9,
                     patience=2, verbose=0, log=lambda m: None)
    assert 3 <= len(result['history']) < 30
    clf.set_state({'rows': rows})


def test_fit_without_validation_reports_losses(clf, tiny_examples):
    rows = clf.state()['rows']
    result = clf.fit(tiny_examples, epochs=2, batch_size=5, learning_rate=1e-2, verbose=0)
    assert result['epoch'] == 2 and [h['epoch'] for h in result['history']] == [1, 2]
    assert all(np.isfinite(h['loss']) and h['loss'] > 0 for h in result['history'])
    clf.set_state({'rows': rows})


def test_steps_per_epoch_longer_than_the_data_cycles_through_it(clf, tiny_examples):
    """10 examples, batch 4 = 3 batches a pass; 7 steps must all run, every epoch."""
    rows = clf.state()['rows']
    steps = keras.callbacks.LambdaCallback()
    seen = []
    steps.on_train_batch_end = lambda batch, logs=None: seen.append(batch)
    result = clf.fit(tiny_examples, epochs=2, batch_size=4, steps_per_epoch=7,
                     learning_rate=1e-3, verbose=0, callbacks=[steps])
    assert seen == list(range(7)) * 2 and len(result['history']) == 2
    batches = clf.batches(tiny_examples, batch_size=4, seed=1, steps=7)
    assert all(len(batches[i][1]) > 0 for i in range(7))  # no batch beyond one pass is empty
    firsts = {tuple(sorted(batches.order(p)[:4])) for p in range(3)}
    assert len(firsts) > 1  # each pass is reshuffled
    clf.set_state({'rows': rows})


def test_length_grouped_batches_cover_each_pass_once_with_similar_lengths(clf):
    examples = [('好' * n, n % 2) for n in range(1, 41)]  # 40 texts of 40 lengths
    grouped = clf.batches(examples, batch_size=4, seed=0)
    plain = clf.batches(examples, batch_size=4, seed=0)
    plain.group_by_length = False

    def spread(batches):  # mean length range inside a batch
        order = batches.order(0)
        return np.mean([np.ptp([len(examples[i][0]) for i in order[b:b + 4]]) for b in range(0, 40, 4)])
    for data_pass in range(3):
        assert sorted(grouped.order(data_pass)) == list(range(40))  # each text once a pass
    assert spread(grouped) < spread(plain) / 2
    # members still change from pass to pass, not a fixed partition
    batches_of = lambda p: {frozenset(grouped.order(p)[b:b + 4]) for b in range(0, 40, 4)}  # noqa: E731
    assert batches_of(0) != batches_of(1)


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_gathered_head_gives_the_full_sequence_loss_and_gradient(kind, tiny_bert_dir, tiny_gpt_dir,
                                                                 tiny_examples):
    from ptuning_tf.losses import gathered_crossentropy, masked_crossentropy
    clf = PromptClassifier.build(tiny_bert_dir if kind == 'bert' else tiny_gpt_dir, kind=kind,
                                 maxlen=32, method='finetune')
    inputs, targets = clf.batches(tiny_examples, batch_size=6, seed=2)[0]
    assert 0 < np.count_nonzero(targets) < targets.size  # padding and unmasked positions exist
    with tf.GradientTape(persistent=True) as tape:
        gathered = gathered_crossentropy(targets, clf.training_model(inputs, training=False))
        full = masked_crossentropy(targets, clf.model(inputs[:-1], training=False))
    assert float(gathered) == pytest.approx(float(full), rel=1e-5)
    weights = clf.model.trainable_weights
    assert {id(w) for w in clf.training_model.trainable_weights} == {id(w) for w in weights}
    for g, f in zip(tape.gradient(gathered, weights), tape.gradient(full, weights)):
        np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(), tf.convert_to_tensor(f).numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_predict_returns_labels_and_probabilities(clf):
    labels, probs = clf.predict(TEXTS)
    assert labels.shape == (len(TEXTS),) and set(labels.tolist()) <= {0, 1}
    assert probs.shape == (len(TEXTS), 2) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    with pytest.raises(TypeError, match='not one string'):
        clf.predict('很好')
    with pytest.raises(TypeError, match='not one string'):
        clf.predict_proba('很好')
    assert clf.predict_proba([]).shape == (0, 2)


def test_probabilities_are_the_label_word_softmax(clf):
    """predict_proba reads the full MLM output at [MASK] and keeps the two label words."""
    e = clf.template.encode(TEXTS[3])
    ids = np.array([e.token_ids])
    logits = clf.model([ids, np.zeros_like(ids)], training=False).numpy()[0, e.slot]
    expected = tf.nn.softmax(logits[clf.template.label_ids]).numpy()
    np.testing.assert_allclose(clf.predict_proba([TEXTS[3]])[0], expected, atol=1e-5)


@pytest.mark.parametrize('batch_size', [64, 2])
def test_length_sorted_batching_does_not_change_predictions(clf, batch_size):
    batched = clf.predict_proba(TEXTS, batch_size=batch_size)
    single = np.concatenate([clf.predict_proba([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert len({tuple(np.round(p, 6)) for p in single}) > 1  # not all the same: order matters


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_xla_predictions_equal_the_plain_ones(kind, clf, tiny_gpt_dir):
    """jit_compile pads lengths to buckets and batches to full size: same probabilities."""
    model = clf if kind == 'bert' else PromptClassifier.build(tiny_gpt_dir, kind='gpt', maxlen=32)
    np.testing.assert_allclose(model.predict_proba(TEXTS, batch_size=4, jit_compile=True),
                               model.predict_proba(TEXTS, batch_size=4), atol=1e-5)


def test_labels_outside_the_classes_raise(clf):
    with pytest.raises(ValueError, match='outside'):
        clf.fit([('很好', 2)], epochs=1, verbose=0)
    with pytest.raises(ValueError, match='no training examples'):
        clf.fit([], epochs=1, verbose=0)
    with pytest.raises(ValueError, match='no examples'):
        clf.evaluate([])


def test_set_seed_seeds_python_numpy_and_tensorflow():
    def draw():
        return random.random(), np.random.rand(), float(tf.random.uniform(()))
    set_seed(3)
    a = draw()
    set_seed(3)
    assert draw() == a
    set_seed(4)
    assert draw() != a


def test_same_seed_same_run(tiny_bert_dir, tiny_examples):
    # dropout on, so the TensorFlow seed matters as well as the masking seed
    c = PromptClassifier.build(tiny_bert_dir, maxlen=32, dropout=0.2)
    start = c.state()['rows']

    def run(seed, noise):
        keras.utils.set_random_seed(noise)  # whatever the global state was before, fit reseeds
        c.set_state({'rows': start})
        c.fit(tiny_examples, epochs=1, batch_size=4, learning_rate=1e-2, seed=seed, verbose=0)
        return c.state()['rows']
    first = run(5, noise=100)
    assert not np.array_equal(first, start)
    np.testing.assert_array_equal(run(5, noise=200), first)


def test_gpt_classifier_trains_and_predicts(tiny_gpt_dir, tiny_examples):
    gpt = PromptClassifier.build(tiny_gpt_dir, kind='gpt', maxlen=32)
    start = gpt.predict_proba(TEXTS)
    result = gpt.fit(tiny_examples, tiny_examples, epochs=1, batch_size=4, learning_rate=5e-2,
                     verbose=0, log=lambda m: None)
    assert 0 <= result['valid_acc'] <= 1
    labels, probs = gpt.predict(TEXTS)
    assert set(labels.tolist()) <= {0, 1} and not np.allclose(start, probs)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    single = np.concatenate([gpt.predict_proba([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(probs, single, atol=1e-5)
