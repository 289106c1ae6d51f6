"""PtuningEmbedding: only the prompt rows learn; the rest of the model is bit-for-bit frozen."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ptuning_tf import PromptClassifier, PtuningEmbedding


def _all_weights(model):
    return {w.name: w.numpy().copy() for w in model.weights}


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_training_changes_only_prompt_rows(kind, tiny_bert_dir, tiny_gpt_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_bert_dir if kind == 'bert' else tiny_gpt_dir, kind=kind, maxlen=32)
    before = _all_weights(clf.model)
    clf.fit(tiny_examples, epochs=2, batch_size=4, learning_rate=1e-2, verbose=0)
    after = _all_weights(clf.model)
    assert before.keys() == after.keys()
    token_name = clf.embedding.embeddings.name
    for name in before:
        if name == token_name:
            continue
        assert np.array_equal(before[name], after[name]), name
    changed = np.any(before[token_name] != after[token_name], axis=1)
    assert set(np.nonzero(changed)[0]) == set(range(1, 9))


def test_finetune_mode_trains_the_whole_model(tiny_bert_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_bert_dir, mode='finetune', maxlen=32)
    before = _all_weights(clf.model)
    clf.fit(tiny_examples, epochs=1, batch_size=4, learning_rate=1e-2, verbose=0)
    after = _all_weights(clf.model)
    changed = [n for n in before if not np.array_equal(before[n], after[n])]
    assert len(changed) > len(before) // 2
    assert np.any(before[clf.embedding.embeddings.name][50] != after[clf.embedding.embeddings.name][50])


@pytest.mark.parametrize('mode', ['embedding', 'dense'])
def test_gradient_reaches_only_trainable_rows(mode):
    layer = PtuningEmbedding(input_dim=20, output_dim=4, trainable_ids=[3, 5])
    layer.build((None, None))
    inputs = tf.constant([[3, 4, 5, 6, 7]]) if mode == 'embedding' else tf.random.normal((2, 4))
    with tf.GradientTape() as tape:
        out = layer(inputs, mode=mode)
        loss = tf.reduce_sum(out * tf.random.normal(tf.shape(out)))
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings)).numpy()
    nonzero = set(np.nonzero(np.any(grad != 0, axis=1))[0])
    assert nonzero == {3, 5}
    # the matrix is restored after the call: the layer still owns a variable
    assert isinstance(layer.embeddings, tf.Variable)


def test_forward_value_is_unchanged_by_the_mask():
    masked = PtuningEmbedding(input_dim=12, output_dim=3, trainable_ids=[1, 2])
    plain = PtuningEmbedding(input_dim=12, output_dim=3, trainable_ids=None)
    masked.build((None, None))
    plain.build((None, None))
    plain.set_weights(masked.get_weights())
    ids = tf.constant([[0, 1, 2, 3, 11]])
    np.testing.assert_array_equal(masked(ids).numpy(), plain(ids).numpy())


def test_bad_trainable_ids_raise():
    with pytest.raises(ValueError, match='outside the vocabulary'):
        PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[3, 10])
    with pytest.raises(ValueError, match='at least one'):
        PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[])


def test_get_config_round_trip():
    layer = PtuningEmbedding(input_dim=10, output_dim=2, trainable_ids=[2, 4])
    clone = PtuningEmbedding.from_config(layer.get_config())
    assert clone.trainable_ids == (2, 4)
    assert clone.input_dim == 10 and clone.output_dim == 2


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_saved_keras_model_reloads_without_custom_objects(kind, tiny_bert_dir, tiny_gpt_dir, tmp_path):
    clf = PromptClassifier.build(tiny_bert_dir if kind == 'bert' else tiny_gpt_dir, kind=kind, maxlen=32)
    ids = np.array([[101, 1, 2, 3, 4, 103, 5, 6, 7, 8, 110, 120, 102]])
    inputs = ids if kind == 'gpt' else [ids, np.zeros_like(ids)]
    expected = clf.model.predict(inputs, verbose=0)
    path = str(tmp_path / ('%s.keras' % kind))
    clf.model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    assert isinstance(reloaded.get_layer('Embedding-Token'), PtuningEmbedding)
    assert reloaded.get_layer('Embedding-Token').trainable_ids == tuple(range(1, 9))
    np.testing.assert_array_equal(reloaded.predict(inputs, verbose=0), expected)


def test_gpt_cannot_see_future_tokens(tiny_gpt_dir):
    clf = PromptClassifier.build(tiny_gpt_dir, kind='gpt', maxlen=32)
    a = np.array([[101, 1, 2, 110, 111, 112, 113]])
    b = a.copy()
    b[0, 5:] = [120, 121]
    out_a, out_b = clf.model.predict(a, verbose=0), clf.model.predict(b, verbose=0)
    np.testing.assert_allclose(out_a[0, :5], out_b[0, :5], atol=1e-6)
    assert not np.allclose(out_a[0, 5:], out_b[0, 5:])
