"""PromptClassifier: Keras fit with callbacks, best-valid restore, predictions, seeds."""
import numpy as np
import pytest
import tf_keras as keras

from ptuning_tf import PromptClassifier


@pytest.fixture(scope='module')
def clf(tiny_bert_dir):
    return PromptClassifier.build(tiny_bert_dir, maxlen=32)


def test_fit_uses_keras_callbacks_and_reports_each_epoch(clf, tiny_examples):
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    messages = []
    result = clf.fit(tiny_examples, tiny_examples[:6], tiny_examples[6:], epochs=3, batch_size=4,
                     learning_rate=5e-2, callbacks=[callback], verbose=0, log=messages.append)
    assert len(seen) == 3 and all('loss' in logs and 'valid_acc' in logs for logs in seen)
    assert [h['epoch'] for h in result['history']] == [1, 2, 3]
    assert len(messages) == 3 and 'valid_acc' in messages[0]
    best = max(result['history'], key=lambda h: h['valid_acc'])
    assert result['valid_acc'] == best['valid_acc']
    # the best-valid prompt is the one in the model at the end
    assert clf.evaluate(tiny_examples[:6]) == pytest.approx(result['valid_acc'])


def test_early_stopping(tiny_bert_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    result = clf.fit(tiny_examples, tiny_examples, epochs=30, batch_size=4, learning_rate=1e-9,
                     patience=2, verbose=0, log=lambda m: None)
    assert len(result['history']) < 30


def test_predict_returns_labels_and_probabilities(clf):
    labels, probs = clf.predict(['很好', '太差了', '一般'])
    assert labels.shape == (3,) and set(labels) <= {0, 1}
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    with pytest.raises(TypeError):
        clf.predict('很好')


def test_dynamic_padding_does_not_change_predictions(clf):
    texts = ['很好', '质量好价格便宜服务很好' * 3, '差', '送货快，满意，推荐', '不会再买了']
    batched = clf.predict_proba(texts, batch_size=64)
    single = np.concatenate([clf.predict_proba([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_labels_outside_the_classes_raise(clf):
    with pytest.raises(ValueError, match='outside'):
        clf.fit([('很好', 2)], epochs=1, verbose=0)


def test_same_seed_same_run(tiny_bert_dir, tiny_examples):
    def run():
        c = PromptClassifier.build(tiny_bert_dir, maxlen=32)
        c.fit(tiny_examples, epochs=1, batch_size=4, learning_rate=1e-2, seed=5, verbose=0)
        return c.prompt_rows()
    np.testing.assert_array_equal(run(), run())


def test_gpt_classifier_trains_and_predicts(tiny_gpt_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_gpt_dir, kind='gpt', maxlen=32)
    start = clf.predict_proba(['很好'])
    clf.fit(tiny_examples, epochs=1, batch_size=4, learning_rate=5e-2, verbose=0)
    assert not np.allclose(start, clf.predict_proba(['很好']))
