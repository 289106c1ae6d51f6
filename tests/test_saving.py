"""One save/load for every method: a few KB for prompts, atomic, identical predictions, tied to its base."""
import io
import json
import os
import shutil

import numpy as np
import pytest

from conftest import make_model_dir
from ptuning_tf import CheckpointError, PromptClassifier, PromptFileError, load, pattern, save
from ptuning_tf import checkpoint as checkpoint_module
from ptuning_tf.checkpoint import embedding_fingerprint, model_fingerprint
from ptuning_tf.saving import read_saved

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']
EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜', '服务很好，推荐')] + \
    [(t, 0) for t in ('太差了', '质量不好，失望', '不会再买了')]


def _with_random_prompt(clf, seed=0):
    n = len(clf.template.prompt_ids)
    clf.set_state({'rows': np.random.RandomState(seed).randn(n, 32).astype('float32')})
    return clf


@pytest.fixture(scope='module')
def trained(tiny_bert_dir):
    return _with_random_prompt(PromptClassifier.build(tiny_bert_dir, maxlen=32))


@pytest.fixture(scope='module')
def other_base(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('other')), 'bert', seed=7)


@pytest.fixture(scope='module')
def finetuned(tiny_bert_dir):
    clf = PromptClassifier.build(tiny_bert_dir, method='finetune', maxlen=32, label_words=('差', '好'))
    clf.fit(EXAMPLES, epochs=1, batch_size=4, learning_rate=1e-2, seed=0, verbose=0)
    return clf


def test_reload_gives_identical_predictions(trained, tiny_bert_dir, tmp_path):
    out = save(trained, str(tmp_path / 'p'))
    assert sorted(os.listdir(out)) == ['classifier.json', 'prompt.npz']
    # 8 rows x 32 floats plus the record; the model itself is ~60k parameters
    assert os.path.getsize(os.path.join(out, 'prompt.npz')) < 6 * 1024
    for path in (out, os.path.join(out, 'prompt.npz')):  # the directory, or the file alone
        fresh = load(path, tiny_bert_dir)
        np.testing.assert_array_equal(fresh.state()['rows'], trained.state()['rows'])
        np.testing.assert_array_equal(fresh.predict_proba(TEXTS), trained.predict_proba(TEXTS))
    # ...and the prompt is what makes them equal: a fresh model predicts differently
    untouched = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    assert not np.allclose(untouched.predict_proba(TEXTS), trained.predict_proba(TEXTS))


def test_record_holds_the_whole_config_and_the_base(trained, tiny_bert_dir, tmp_path):
    out = save(trained, str(tmp_path / 'p'), extra_files={'metrics.json': '{"x": 1}'})
    record = json.load(open(os.path.join(out, 'classifier.json')))
    assert record['format'] == 'ptuning_tf.saved/1' and record['state'] == 'prompt.npz'
    config = record['config']
    assert config['kind'] == 'mlm' and config['method'] == {'name': 'ptuning', 'prompt_encoder': 'none', 'prompt_init': ''}
    assert config['pattern'] == trained.template.pattern and config['label_words'] == ['不', '很']
    assert config['loss'] == {'aux_loss': True, 'whole_word_mask': False, 'mask_rate': 0.15}
    ckpt = os.path.join(tiny_bert_dir, 'bert_model.ckpt')
    assert record['base']['family'] == 'bert' and record['base']['fingerprint'] == model_fingerprint(ckpt)
    assert json.load(open(os.path.join(out, 'metrics.json'))) == {'x': 1}
    inside, arrays, own = read_saved(os.path.join(out, 'prompt.npz'))  # the file describes itself
    assert inside == record and set(arrays) == {'rows'} and own is None


def test_causal_prompt_with_custom_template_and_loss_options_round_trips(tiny_gpt_dir, tmp_path):
    clf = _with_random_prompt(PromptClassifier.build(
        tiny_gpt_dir, kind='lm', maxlen=24, pattern=pattern(3, 2, 'lm'), label_words=('差', '好'),
        prompt_ids=[11, 12, 13, 14, 15], aux_loss=False), seed=4)
    fresh = load(save(clf, str(tmp_path / 'gpt')), tiny_gpt_dir)  # template etc. come from the file
    assert fresh.kind.name == 'lm' and fresh.template.config() == clf.template.config()
    assert fresh.loss.aux_loss is False and fresh.embedding.trainable_ids == (11, 12, 13, 14, 15)
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_other_base_model_is_refused(trained, other_base, tmp_path):
    out = save(trained, str(tmp_path / 'p'))
    with pytest.raises(PromptFileError, match='another base model'):
        load(out, other_base)
    loose = load(out, other_base, strict=False)  # explicitly allowed: the rows go in unchanged
    np.testing.assert_array_equal(loose.state()['rows'], trained.state()['rows'])


def test_the_fingerprint_covers_every_variable_not_only_the_embeddings(tiny_bert_dir, tmp_path):
    other = str(tmp_path / 'other')
    shutil.copytree(tiny_bert_dir, other)
    ckpt = os.path.join(other, 'bert_model.ckpt')
    variables = checkpoint_module.load_variables(ckpt)
    variables['bert/encoder/layer_1/output/dense/bias'] = \
        variables['bert/encoder/layer_1/output/dense/bias'] + 0.01
    checkpoint_module.save_variables(ckpt, variables)
    assert embedding_fingerprint(ckpt) == embedding_fingerprint(os.path.join(tiny_bert_dir, 'bert_model.ckpt'))
    assert model_fingerprint(ckpt) != model_fingerprint(os.path.join(tiny_bert_dir, 'bert_model.ckpt'))


def test_a_config_with_fewer_layers_than_its_checkpoint_is_refused(tiny_bert_dir, tmp_path):
    liar = str(tmp_path / 'liar')
    shutil.copytree(tiny_bert_dir, liar)
    config = json.load(open(os.path.join(liar, 'config.json')))
    json.dump(dict(config, num_hidden_layers=1), open(os.path.join(liar, 'config.json'), 'w'))
    with pytest.raises(CheckpointError, match='variables its config does not build .*layer_1'):
        PromptClassifier.build(liar, maxlen=32)


def test_fine_tuned_classifier_is_saved_whole_and_is_its_own_base(finetuned, tiny_bert_dir, tmp_path):
    expected = finetuned.predict_proba(TEXTS)
    base = PromptClassifier.build(tiny_bert_dir, method='finetune', maxlen=32, label_words=('差', '好'))
    assert np.abs(base.predict_proba(TEXTS) - expected).max() > 1e-3  # training moved the weights
    out = save(finetuned, str(tmp_path / 'ft'))
    assert sorted(os.listdir(out)) == ['classifier.json', 'model']
    loaded = load(out)
    assert loaded.method.name == 'finetune' and loaded.template.config() == finetuned.template.config()
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), expected, atol=1e-6, rtol=0)
    with pytest.raises(PromptFileError, match='own weights and vocab; drop --model-dir'):
        load(out, tiny_bert_dir)
    PromptClassifier.build(os.path.join(out, 'model'), maxlen=32)  # also an ordinary base model


def _old_prompt_file(clf, path, deep=False):
    """A prompt file exactly as 0.1.0's save_prompt wrote it."""
    t = clf.template
    meta = {'format': 'ptuning_tf.prompt/1', 'version': '0.1.0', 'kind': 'bert',
            'template': dict(t.config(), kind='bert'), 'trainable_ids': t.prompt_ids,
            'aux_loss': True, 'whole_word_mask': False, 'method': 'ptuning',
            'base_fingerprint': embedding_fingerprint(clf.spec.checkpoint_path),
            'trained_prompt_encoder': 'none'}
    arrays = dict(clf.state())
    if deep:
        meta.update(format='ptuning_tf.prompt/2', method='ptuning_v2', prompt_length=4,
                    head=clf.method.head, trained_reparameterized=False)
    np.savez(path, ids=np.array(t.prompt_ids, 'int32'), meta=np.array(json.dumps(meta)), **arrays)
    return path


def test_files_of_0_1_0_still_load(trained, finetuned, tiny_bert_dir, other_base, tmp_path):
    old = _old_prompt_file(trained, str(tmp_path / 'prompt.npz'))
    for path in (old, str(tmp_path)):  # the file, or the train --out directory holding it
        np.testing.assert_array_equal(load(path, tiny_bert_dir).predict_proba(TEXTS),
                                      trained.predict_proba(TEXTS))
    with pytest.raises(PromptFileError, match='another base model'):  # its old fingerprint is checked
        load(old, other_base)
    deep = PromptClassifier.build(tiny_bert_dir, method='ptuning_v2', prompt_length=4, head='linear',
                                  maxlen=32)
    deep_file = _old_prompt_file(deep, str(tmp_path / 'deep.npz'), deep=True)
    np.testing.assert_array_equal(load(deep_file, tiny_bert_dir).predict_proba(TEXTS),
                                  deep.predict_proba(TEXTS))
    # a 0.1.0 fine-tuned model directory: a model dir with classifier.json in it
    model = str(tmp_path / 'ft' / 'model')
    shutil.copytree(os.path.join(save(finetuned, str(tmp_path / 'new_ft')), 'model'), model)
    t = finetuned.template.config()
    json.dump({'format': 'ptuning_tf.finetuned/1', 'kind': 'bert', 'mode': 'finetune',
               'template': t, 'aux_loss': True, 'whole_word_mask': False},
              open(os.path.join(model, 'classifier.json'), 'w'))
    for path in (model, str(tmp_path / 'ft')):
        np.testing.assert_allclose(load(path).predict_proba(TEXTS), finetuned.predict_proba(TEXTS),
                                   atol=1e-6, rtol=0)


def test_a_failed_save_leaves_the_old_directory_whole(trained, tmp_path, monkeypatch):
    out = save(trained, str(tmp_path / 'p'), extra_files={'metrics.json': '1'})
    before = {n: open(os.path.join(out, n), 'rb').read() for n in os.listdir(out)}
    real_rename = os.rename

    def broken_rename(src, dst):  # the final move into place fails (disk full, Ctrl-C)
        if os.path.basename(src).startswith('.tmp-'):
            raise KeyboardInterrupt()
        return real_rename(src, dst)
    monkeypatch.setattr(checkpoint_module.os, 'rename', broken_rename)
    with pytest.raises(KeyboardInterrupt):
        save(_with_random_prompt(trained, seed=9), out, extra_files={'metrics.json': '2'})
    monkeypatch.undo()
    _with_random_prompt(trained, seed=0)
    assert {n: open(os.path.join(out, n), 'rb').read() for n in os.listdir(out)} == before
    assert sorted(os.listdir(str(tmp_path))) == ['p']  # no temporary directory left behind


def test_bad_saved_files(tmp_path, tiny_bert_dir, trained):
    with pytest.raises(PromptFileError, match='not found'):
        load(str(tmp_path / 'missing.npz'), tiny_bert_dir)
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'not a zip')
    with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
        load(str(junk), tiny_bert_dir)
    good = os.path.join(save(trained, str(tmp_path / 'good')), 'prompt.npz')
    data = open(good, 'rb').read()
    for name, content in (('cut.npz', data[:len(data) // 2]), ('empty.npz', b'')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
            load(str(tmp_path / name), tiny_bert_dir)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array('{"format": "x"}'), rows=np.zeros(3))
    (tmp_path / 'other.npz').write_bytes(buffer.getvalue())
    with pytest.raises(PromptFileError, match="format 'x'"):
        load(str(tmp_path / 'other.npz'), tiny_bert_dir)
    (tmp_path / 'empty_dir').mkdir()
    with pytest.raises(PromptFileError, match='holds no saved classifier'):
        load(str(tmp_path / 'empty_dir'))


def test_unwritable_directory(trained, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(PromptFileError, match='cannot write'):
        save(trained, str(blocker / 'p'))
    assert blocker.read_text() == 'x'


def test_saved_files_are_readable_like_plain_files(trained, tmp_path):
    old = os.umask(0o022)
    try:
        out = save(trained, str(tmp_path / 'p'))  # written via mkdtemp (0700)
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(out, 'prompt.npz')).st_mode & 0o777 == 0o644

