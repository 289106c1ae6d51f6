"""Every bert4keras family P-tunes: tiny models written in that family's own checkpoint layout,
recognised from their variables, loaded as plain bert4keras loads them, only prompt rows trained,
prompts saved and reloaded to identical predictions, P-tuning v2 on top."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import tiny_config, write_tiny_vocab
from ptuning_tf import PromptClassifier, load, save
from ptuning_tf.checkpoint import save_model_dir
from ptuning_tf.families import FAMILIES, detect_family, get_family
from ptuning_tf.models import build_transformer
from test_layers import _all_weights, _assert_only_rows_changed

EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜', '服务很好，推荐')] + \
    [(t, 0) for t in ('太差了', '质量不好，失望', '不会再买了')]
TEXTS = ['质量很好', '太差了，不会再买']
IDS = np.array([[101, 1, 2, 3, 110, 120, 130, 102]])
# family -> (template kind, extra config keys)
CASES = {'albert': ('mlm', {'embedding_size': 16}), 'nezha': ('mlm', {'max_relative_position': 64}),
         'roformer_v2': ('mlm', {}), 'gpt2': ('lm', {}), 'gpt2_ml': ('lm', {}), 'bert': ('lm', {})}


def _write(tmp_path, family, kind, extra, seed=0):
    """A random tiny model of `family` saved by our writer, its config without the "model" key
    (as a user's checkpoint comes)."""
    keras.utils.set_random_seed(seed)
    vocab = write_tiny_vocab(str(tmp_path / 'vocab.txt'))
    config = dict(tiny_config(sum(1 for _ in open(vocab, encoding='utf-8'))), **extra)
    transformer = build_transformer(config, None, kind, trainable_ids=None, family=family)
    out = str(tmp_path / family)
    save_model_dir(transformer, out, config, vocab)
    return out, transformer


@pytest.fixture(scope='module', params=sorted(CASES), ids=sorted(CASES))
def model(request, tmp_path_factory):
    family = request.param
    kind, extra = CASES[family]
    out, transformer = _write(tmp_path_factory.mktemp(family), family, kind, extra)
    return family, kind, out, transformer


def _inputs(kind, ids=IDS):
    return ids if kind == 'lm' else [ids, np.zeros_like(ids)]


def test_checkpoint_is_in_the_family_layout_and_recognised(model):
    family, kind, out, _ = model
    names = {n for n, _ in tf.train.list_variables(os.path.join(out, 'bert_model.ckpt'))}
    f = get_family(family)
    assert f.word_embeddings in names and all(n.startswith(f.scopes + ('cls/',)) for n in names)
    config = json.load(open(os.path.join(out, 'config.json')))
    assert 'model' not in config
    assert detect_family(config, names).name == family
    assert PromptClassifier.build(out, kind=kind, maxlen=16).spec.family.name == family


def test_plain_bert4keras_loads_what_we_wrote(model):
    from bert4keras.models import build_transformer_model
    family, kind, out, ours = model
    extra = dict(application='lm', segment_vocab_size=0) if family == 'bert' else {}
    mlm = {} if get_family(family).causal_only else dict(with_mlm=True)
    theirs = build_transformer_model(os.path.join(out, 'config.json'), os.path.join(out, 'bert_model.ckpt'),
                                     model=family, **mlm, **extra)
    logits = ours.model.predict(_inputs(kind), verbose=0)
    np.testing.assert_allclose(theirs.predict(_inputs(kind), verbose=0), tf.nn.softmax(logits).numpy(),
                               atol=1e-5, rtol=0)


def test_ptuning_trains_only_prompt_rows_and_reloads_exactly(model, tmp_path):
    family, kind, out, _ = model
    clf = PromptClassifier.build(out, kind=kind, maxlen=24, prompt_ids=[1, 2, 3],
                                 pattern='{p}{mask}{p}{p}{text}' if kind == 'mlm' else '{p}{text}{p}{p}{mask}')
    assert [w.name for w in clf.model.trainable_weights] == [clf.embedding.embeddings.name]
    before = _all_weights(clf.model)
    clf.fit(EXAMPLES, epochs=1, batch_size=3, learning_rate=5e-2, verbose=0)
    _assert_only_rows_changed(clf, before, [1, 2, 3])  # ALBERT: rows of the small factorised table
    fresh = load(save(clf, str(tmp_path / 'p')), out)
    assert fresh.spec.family.name == family
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_ptuning_v2_and_the_prompt_encoder_train_on_every_family(model):
    family, kind, out, _ = model
    for options in (dict(method='ptuning_v2', prompt_length=2, head='linear', maxlen=24),
                    dict(prompt_encoder='mlp', maxlen=24)):
        clf = PromptClassifier.build(out, kind=kind, **options)
        frozen = {w.name: w.numpy().copy() for w in clf.model.weights
                  if not any(w is t for t in clf.model.trainable_weights)}
        clf.fit(EXAMPLES, epochs=1, batch_size=3, learning_rate=1e-2, verbose=0)
        changed = [n for n, v in frozen.items() if not np.array_equal(v, next(
            w.numpy() for w in clf.model.weights if w.name == n))]
        assert changed == [], (family, options, changed)
        assert clf.predict_proba(TEXTS).shape == (2, 2)


def test_albert_weights_load_into_unshared_layers(tmp_path):
    out, albert = _write(tmp_path, 'albert', 'mlm', {'embedding_size': 16}, seed=3)
    clf = PromptClassifier.build(out, maxlen=16, family='albert_unshared')
    assert clf.spec.family.name == 'albert_unshared'
    assert 'Transformer-1-MultiHeadSelfAttention' in clf.transformer.layers  # one layer each
    np.testing.assert_allclose(clf.model.predict(_inputs('mlm'), verbose=0),
                               albert.model.predict(_inputs('mlm'), verbose=0), atol=1e-5, rtol=0)


def test_causal_only_families_refuse_the_masked_template(model):
    family, kind, out, _ = model
    if not get_family(family).causal_only:
        pytest.skip('a masked LM')
    with pytest.raises(ValueError, match="%s is a causal LM: use the LM template" % family):
        PromptClassifier.build(out, kind='mlm', maxlen=16)


def test_the_family_registry_and_its_errors():
    assert {'bert', 'roformer', 'nezha', 'roformer_v2', 'albert', 'albert_unshared', 'gpt2',
            'gpt2_ml'} <= set(FAMILIES)
    with pytest.raises(ValueError, match='no ELECTRA generator'):
        get_family('electra')
    with pytest.raises(ValueError, match='cannot tell the model family'):
        detect_family({}, {'foo/bar'})
    with pytest.raises(ValueError, match="said to be 'gpt2', but the checkpoint looks like bert"):
        detect_family({}, {'bert/embeddings/word_embeddings', 'bert/embeddings/position_embeddings'},
                      override='gpt2')


def test_the_command_line_lists_every_family():
    from ptuning_tf.cli import FAMILY_CHOICES
    assert FAMILY_CHOICES == list(FAMILIES)
