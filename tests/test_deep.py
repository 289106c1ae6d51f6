"""P-tuning v2 (deep prompts): only prompts train, the GPT stays causal, saved prompts reload exactly."""
import json
import os

import numpy as np
import pytest

from ptuning_tf import PromptClassifier, PromptFileError, load, save
from ptuning_tf.cli import main
from ptuning_tf.deep import DeepPrompt, DeepPromptEncoder
from ptuning_tf.saving import read_saved
from ptuning_tf.templates import TemplateError

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']
EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜', '服务很好，推荐', '送货快，满意')] + \
    [(t, 0) for t in ('太差了', '质量不好，失望', '不会再买了', '价格贵，东西差')]
M = 4
# (kind, head, reparameterize): every kind and head, reparameterisation on both kinds
CASES = [('bert', 'verbalizer', False), ('bert', 'linear', True),
         ('gpt', 'verbalizer', True), ('gpt', 'linear', False)]


def _weights(layer):
    return [w.numpy().copy() for w in layer.weights]


@pytest.fixture(scope='module', params=CASES, ids=['-'.join(map(str, c)) for c in CASES])
def trained(request, tiny_bert_dir, tiny_gpt_dir):
    kind, head, reparameterize = request.param
    model_dir = tiny_bert_dir if kind == 'bert' else tiny_gpt_dir
    clf = PromptClassifier.build(model_dir, kind=kind, method='ptuning_v2', prompt_length=M,
                                 head=head, reparameterize=reparameterize, maxlen=32)
    before = {layer.name: _weights(layer) for layer in clf.model.layers}
    clf.fit(EXAMPLES, epochs=2, batch_size=4, learning_rate=5e-2, verbose=0)
    return clf, model_dir, before


def test_only_prompt_parameters_train(trained):
    clf, _, before = trained
    assert clf.method.name == 'ptuning_v2'
    changed = set()
    for layer in clf.model.layers:
        trainable = {id(w) for w in layer.trainable_weights}
        for weight, old in zip(layer.weights, before[layer.name]):
            if not np.array_equal(weight.numpy(), old):
                changed.add(layer.name)
                # every backbone weight (and the frozen `base` of the encoder) bit-for-bit unchanged
                assert id(weight) in trainable and isinstance(
                    layer, (DeepPrompt, DeepPromptEncoder)) or layer.name == 'Classifier-Head', weight.name
    prompt_layers = {'Deep-Prompt-Encoder'} if clf.method.reparameterize else \
        {'Deep-Prompt-%d' % i for i in range(2)}
    assert prompt_layers <= changed
    assert ('Classifier-Head' in changed) == (clf.method.head == 'linear')
    assert clf.model.trainable_weights and all(
        w.name.startswith(('Deep-', 'Classifier-Head')) for w in clf.model.trainable_weights)


def test_saved_deep_prompts_reload_to_identical_predictions(trained, tmp_path):
    clf, model_dir, _ = trained
    out = save(clf, str(tmp_path / 'deep'))
    path = str(tmp_path / 'deep' / 'prompt.npz')
    meta, arrays, _ = read_saved(out)
    assert meta['config']['method'] == dict(name='ptuning_v2', prompt_length=M, head=clf.method.head,
                                            reparameterize=clf.method.reparameterize)
    assert arrays['prompts'].shape == (2, M, 32)
    assert ('head_kernel' in arrays) == (clf.method.head == 'linear')
    assert os.path.getsize(path) < 8 * 1024  # 2 layers x 4 x 32 floats, head, metadata
    fresh = load(out, model_dir)
    assert fresh.method.reparameterize is False  # reparameterisation folded away
    assert 'Deep-Prompt-Encoder' not in fresh.transformer.layers
    live = clf.predict_proba(TEXTS)
    if clf.method.reparameterize:  # the MLP computed in a graph vs once, folded
        np.testing.assert_allclose(fresh.predict_proba(TEXTS), live, atol=1e-6)
    else:
        np.testing.assert_array_equal(fresh.predict_proba(TEXTS), live)
    np.testing.assert_array_equal(fresh.state()['prompts'], clf.state()['prompts'])
    assert fresh.evaluate([(t, 1) for t in TEXTS]) == clf.evaluate([(t, 1) for t in TEXTS])


def _lm_outputs(clf, ids):
    return clf.transformer.model.predict(np.array(ids, 'int32'), verbose=0)


@pytest.mark.parametrize('reparameterize', [False, True])
def test_gpt_with_deep_prompts_cannot_see_future_tokens(tiny_gpt_dir, reparameterize):
    clf = PromptClassifier.build(tiny_gpt_dir, kind='gpt', method='ptuning_v2', prompt_length=M,
                                 reparameterize=reparameterize, maxlen=32)
    clf.set_state({'prompts': np.random.RandomState(0).randn(2, M, 32).astype('float32')})
    ids = clf.template.encode('质量很好价格便宜', label=1).token_ids
    t = len(ids) - 3
    other = list(ids)
    other[t] = clf.template.label_ids[0]
    a, b = _lm_outputs(clf, [ids]), _lm_outputs(clf, [other])
    np.testing.assert_allclose(a[0, :t], b[0, :t], atol=1e-6, rtol=0)
    assert not np.allclose(a[0, t:], b[0, t:])
    # and the prompts themselves are read: other prompts change every later output
    clf.set_state({'prompts': np.random.RandomState(1).randn(2, M, 32).astype('float32')})
    c = _lm_outputs(clf, [ids])
    np.testing.assert_allclose(a[0, 0], c[0, 0], atol=1e-6, rtol=0)  # [CLS] comes before them
    assert not np.allclose(a[0, M + 1:], c[0, M + 1:])


def test_initial_prompts_reproduce_the_frozen_backbone(tiny_bert_dir):
    """Before training, deep prompts = the hidden states of the placeholder tokens."""
    deep = PromptClassifier.build(tiny_bert_dir, method='ptuning_v2', prompt_length=M, maxlen=32)
    plain = PromptClassifier.build(tiny_bert_dir, pattern='{p}' * M + '{mask}{text}',
                                   prompt_ids=[1] * M, maxlen=32)
    np.testing.assert_allclose(deep.predict_proba(TEXTS), plain.predict_proba(TEXTS), atol=1e-5)


def test_bad_deep_configurations(tiny_bert_dir):
    with pytest.raises(TemplateError, match='start with'):
        PromptClassifier.build(tiny_bert_dir, method='ptuning_v2', pattern='{mask}{p}{p}{text}')
    with pytest.raises(TemplateError, match='prompt_length'):
        PromptClassifier.build(tiny_bert_dir, method='ptuning_v2', pattern='{p}{p}{mask}{text}',
                               prompt_length=3)
    for kwargs in (dict(head='linear'), dict(reparameterize=True), dict(prompt_length=5),
                   dict(method='ptuning_v2', prompt_encoder='lstm'),
                   dict(method='finetune', head='linear'), dict(method='prompt')):
        with pytest.raises(ValueError):
            PromptClassifier.build(tiny_bert_dir, maxlen=32, **kwargs)


def test_prompts_of_another_model_size_are_refused(trained, tiny_bert_dir, tmp_path):
    clf, model_dir, _ = trained
    if clf.kind.name != 'mlm' or clf.method.head != 'verbalizer':
        pytest.skip('one case is enough')
    save(clf, str(tmp_path / 'deep'))
    data = dict(np.load(str(tmp_path / 'deep' / 'prompt.npz')))
    data['prompts'] = data['prompts'][:, :, :16]
    np.savez(str(tmp_path / 'bad.npz'), **data)
    with pytest.raises(PromptFileError, match='does not fit'):
        load(str(tmp_path / 'bad.npz'), model_dir)


def test_cli_trains_predicts_and_evaluates_deep_prompts(tiny_gpt_dir, tmp_path, capsys):
    data = tmp_path / 'train.tsv'
    data.write_text('很好\t1\n太差了\t0\n质量好\t1\n不满意\t0\n', encoding='utf-8')
    out = tmp_path / 'out'
    assert main(['train', '--kind', 'gpt', '--model-dir', tiny_gpt_dir, '--train', str(data),
                 '--valid', str(data), '--test', str(data), '--labeled-frac', '1',
                 '--method', 'ptuning_v2', '--prompt-length', '3', '--head', 'linear',
                 '--reparameterize', '--epochs', '1', '--batch-size', '4', '--maxlen', '24',
                 '--out', str(out)]) == 0
    metrics = json.load(open(str(out / 'metrics.json')))
    assert metrics['method'] == dict(name='ptuning_v2', prompt_length=3, head='linear',
                                     reparameterize=True)
    assert os.path.getsize(str(out / 'prompt.npz')) < 8 * 1024
    capsys.readouterr()
    assert main(['predict', str(out / 'prompt.npz'), '--model-dir', tiny_gpt_dir, '--text', '很好']) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row['label'] in (0, 1) and abs(sum(row['probs']) - 1) < 1e-3
    assert main(['eval', str(out / 'prompt.npz'), '--model-dir', tiny_gpt_dir,
                 '--test', str(data)]) == 0
    assert main(['train', '--model-dir', tiny_gpt_dir, '--head', 'linear', '--out', str(out)]) == 2
    assert '--method ptuning has no option --head (--head is for ptuning_v2)' in capsys.readouterr().err
