"""PtuningEmbedding: only the prompt rows learn; the rest of the model is bit-for-bit frozen."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ptuning_tf import PromptClassifier, PtuningEmbedding, pattern
from ptuning_tf.layers import row_sparse_projection
from ptuning_tf.losses import gathered_crossentropy

IDS = np.array([[101, 1, 2, 3, 4, 103, 5, 6, 7, 8, 110, 120, 102]])


def _all_weights(model):
    weights = {w.name: w.numpy().copy() for w in model.weights}
    assert len(weights) == len(model.weights)  # names are unique, nothing is lost in the dict
    return weights


def _changed_rows(before, after):
    return set(np.nonzero(np.any(before != after, axis=1))[0].tolist())


def _model_dir(kind, tiny_bert_dir, tiny_gpt_dir):
    return tiny_bert_dir if kind == 'bert' else tiny_gpt_dir


def _assert_only_rows_changed(clf, before, rows):
    after = _all_weights(clf.model)
    assert before.keys() == after.keys()
    token_name = clf.embedding.embeddings.name
    for name in before:
        if name != token_name:
            assert np.array_equal(before[name], after[name]), '%s changed' % name
    assert _changed_rows(before[token_name], after[token_name]) == set(rows)


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_fit_changes_only_prompt_rows(kind, tiny_bert_dir, tiny_gpt_dir, tiny_examples):
    clf = PromptClassifier.build(_model_dir(kind, tiny_bert_dir, tiny_gpt_dir), kind=kind, maxlen=32)
    # frozen: the token matrix is the one trainable variable of the whole model
    assert [w.name for w in clf.model.trainable_weights] == [clf.embedding.embeddings.name]
    before = _all_weights(clf.model)
    clf.fit(tiny_examples, epochs=2, batch_size=4, learning_rate=1e-2, verbose=0)
    # rows 1..8 moved; the label words (read through the tied output projection in
    # 'dense' mode), the text characters, the head and the encoder are bit-for-bit equal
    _assert_only_rows_changed(clf, before, range(1, 9))


@pytest.mark.parametrize('kind, pattern_text, prompt_ids', [
    ('bert', pattern(prefix=2, infix=2), [11, 12, 13, 14]),
    ('gpt', pattern(prefix=1, infix=2, kind='gpt'), [20, 21, 22]),
])
def test_manual_adam_step_with_configured_prompt_ids(kind, pattern_text, prompt_ids, tiny_bert_dir,
                                                     tiny_gpt_dir, tiny_examples):
    clf = PromptClassifier.build(_model_dir(kind, tiny_bert_dir, tiny_gpt_dir), kind=kind, maxlen=32,
                                 pattern=pattern_text, prompt_ids=prompt_ids)
    assert clf.embedding.trainable_ids == tuple(prompt_ids)
    before = _all_weights(clf.model)
    optimizer = keras.optimizers.Adam(1e-2)
    batches = clf.batches(tiny_examples, batch_size=5, seed=3)
    losses = []
    for step in range(3):
        inputs, targets = batches[step % len(batches)]
        with tf.GradientTape() as tape:
            loss = gathered_crossentropy(targets, clf.training_model(inputs, training=True))
        variables = clf.training_model.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[0] > 0
    _assert_only_rows_changed(clf, before, prompt_ids)


def test_finetune_mode_trains_the_whole_model(tiny_bert_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_bert_dir, method='finetune', maxlen=32)
    assert clf.embedding.trainable_ids is None
    before = _all_weights(clf.model)
    clf.fit(tiny_examples, epochs=1, batch_size=4, learning_rate=1e-2, verbose=0)
    after = _all_weights(clf.model)
    changed = [n for n in before if not np.array_equal(before[n], after[n])]
    assert len(changed) > len(before) // 2
    token_name = clf.embedding.embeddings.name
    rows = _changed_rows(before[token_name], after[token_name])
    # the label words and text characters learn too, not only the prompt rows
    assert len(rows - set(range(1, 9))) > 10


@pytest.mark.parametrize('mode', ['embedding', 'dense'])
@pytest.mark.parametrize('trainable_ids', [[3, 5], None])
def test_gradient_reaches_only_trainable_rows(mode, trainable_ids):
    layer = PtuningEmbedding(input_dim=20, output_dim=4, trainable_ids=trainable_ids)
    layer.build((None, None))
    inputs = tf.constant([[3, 4, 5, 6, 7]]) if mode == 'embedding' else tf.random.normal((2, 4), seed=1)
    with tf.GradientTape() as tape:
        out = layer(inputs, mode=mode)
        loss = tf.reduce_sum(out * tf.random.normal(tf.shape(out), seed=2))
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
    nonzero = set(np.nonzero(np.any(grad != 0, axis=1))[0])
    if trainable_ids is not None:
        assert nonzero == {3, 5}
    elif mode == 'embedding':
        assert nonzero == {3, 4, 5, 6, 7}  # every looked-up row
    else:
        assert nonzero == set(range(20))  # the tied output projection touches every row
    # the matrix is restored after the call: the layer still owns its one variable
    assert isinstance(layer.embeddings, tf.Variable) and len(layer.weights) == 1


def test_row_sparse_projection_gives_the_masked_gradient_exactly():
    rng = np.random.RandomState(0)
    hidden = tf.constant(rng.randn(2, 5, 4).astype('float32'))
    matrix = tf.Variable(rng.randn(20, 4).astype('float32'))
    upstream = tf.constant(rng.randn(2, 5, 20).astype('float32'))
    mask = np.zeros((20, 1), 'float32')
    mask[[3, 5]] = 1
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(hidden)
        sparse = row_sparse_projection(hidden, matrix, [3, 5])
        masked = tf.einsum('bth,vh->btv', hidden, matrix * mask + tf.stop_gradient(matrix) * (1 - mask))
        sparse_loss, masked_loss = tf.reduce_sum(sparse * upstream), tf.reduce_sum(masked * upstream)
    np.testing.assert_allclose(sparse.numpy(), masked.numpy(), rtol=1e-5, atol=1e-5)
    for source in (matrix, hidden):
        np.testing.assert_allclose(tape.gradient(sparse_loss, source).numpy(),
                                   tape.gradient(masked_loss, source).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.any(tape.gradient(sparse_loss, matrix).numpy()[[0, 1, 2, 4, 6]])


def test_forward_values_are_unchanged_by_the_mask():
    masked = PtuningEmbedding(input_dim=12, output_dim=3, trainable_ids=[1, 2])
    plain = PtuningEmbedding(input_dim=12, output_dim=3, trainable_ids=None)
    masked.build((None, None))
    plain.build((None, None))
    plain.set_weights(masked.get_weights())
    matrix = masked.get_weights()[0]
    ids = tf.constant([[0, 1, 2, 3, 11]])
    np.testing.assert_array_equal(masked(ids).numpy(), matrix[[0, 1, 2, 3, 11]][None])
    np.testing.assert_array_equal(masked(ids).numpy(), plain(ids).numpy())
    hidden = np.random.RandomState(0).randn(2, 5, 3).astype('float32')
    dense = masked(tf.constant(hidden), mode='dense').numpy()  # tied output: hidden @ E^T
    assert dense.shape == (2, 5, 12)
    np.testing.assert_allclose(dense, hidden @ matrix.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dense, plain(tf.constant(hidden), mode='dense').numpy())


def test_bad_trainable_ids_raise():
    with pytest.raises(ValueError, match='outside the vocabulary'):
        PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[3, 10])
    with pytest.raises(ValueError, match='outside the vocabulary'):
        PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[-1])
    with pytest.raises(ValueError, match='at least one'):
        PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[])


@pytest.mark.parametrize('trainable_ids', [[2, 4], None])
def test_get_config_round_trip(trainable_ids):
    layer = PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=trainable_ids, mask_zero=True,
                             name='tok')
    config = layer.get_config()
    json.dumps(config)  # serialisable as it is
    assert config['trainable_ids'] == trainable_ids
    clone = PtuningEmbedding.from_config(config)
    assert clone.trainable_ids == (None if trainable_ids is None else tuple(trainable_ids))
    assert (clone.input_dim, clone.output_dim, clone.mask_zero, clone.name) == (10, 2, True, 'tok')
    assert clone.get_config() == config
    layer.build((None, None))
    clone.build((None, None))
    clone.set_weights(layer.get_weights())
    ids = tf.constant([[1, 2, 9]])
    np.testing.assert_array_equal(clone(ids).numpy(), layer(ids).numpy())
    # the serialised form names the registered class, so deserialisation needs no custom_objects
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is PtuningEmbedding and restored.trainable_ids == clone.trainable_ids


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_saved_keras_model_reloads_without_custom_objects(kind, tiny_bert_dir, tiny_gpt_dir, tmp_path):
    clf = PromptClassifier.build(_model_dir(kind, tiny_bert_dir, tiny_gpt_dir), kind=kind, maxlen=32)
    # a learned-looking prompt, so equal outputs are not equal by accident
    clf.set_state({'rows': np.random.RandomState(1).randn(8, 32).astype('float32')})
    inputs = IDS if kind == 'gpt' else [IDS, np.zeros_like(IDS)]
    expected = clf.model.predict(inputs, verbose=0)
    path = str(tmp_path / ('%s.keras' % kind))
    clf.model.save(path)
    # safe mode (the default) refuses Lambda layers: the GPT mask must be a real layer
    reloaded = keras.models.load_model(path, compile=False)
    embedding = reloaded.get_layer('Embedding-Token')
    assert isinstance(embedding, PtuningEmbedding)
    assert embedding.trainable_ids == tuple(range(1, 9))
    np.testing.assert_array_equal(embedding.get_weights()[0], clf.embedding.get_weights()[0])
    np.testing.assert_array_equal(reloaded.predict(inputs, verbose=0), expected)


def test_gpt_cannot_see_future_tokens(tiny_gpt_dir):
    clf = PromptClassifier.build(tiny_gpt_dir, kind='gpt', maxlen=32)
    a = np.array([[101, 1, 2, 110, 111, 112, 113]])
    b = a.copy()
    b[0, 5:] = [120, 121]
    out_a, out_b = clf.model.predict(a, verbose=0), clf.model.predict(b, verbose=0)
    np.testing.assert_allclose(out_a[0, :5], out_b[0, :5], atol=1e-6)
    assert not np.allclose(out_a[0, 5:], out_b[0, 5:])


def test_prompt_init_starts_the_rows_at_the_words_and_touches_nothing_else(tiny_bert_dir):
    plain = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    clf = PromptClassifier.build(tiny_bert_dir, maxlen=32, prompt_init='满意。')
    before, after = _all_weights(plain.model), _all_weights(clf.model)
    token_name = clf.embedding.embeddings.name
    matrix = before[token_name]
    words = [clf.template.tokenizer.token_to_id(c) for c in '满意。']
    assert np.array_equal(after[token_name][1:9], matrix[[words[i % 3] for i in range(8)]])
    assert _changed_rows(matrix, after[token_name]) == set(range(1, 9))
    assert all(np.array_equal(before[n], after[n]) for n in before if n != token_name)
    assert clf.method.for_inference().prompt_init == ''  # a loaded prompt keeps its own rows


def test_prompt_init_rejects_unknown_words_and_an_encoder(tiny_bert_dir):
    from ptuning_tf.templates import TemplateError
    with pytest.raises(TemplateError, match='prompt_init'):
        PromptClassifier.build(tiny_bert_dir, maxlen=32, prompt_init='鑫')
    with pytest.raises(ValueError, match='prompt_init'):
        PromptClassifier.build(tiny_bert_dir, maxlen=32, prompt_init='满意', prompt_encoder='mlp')
