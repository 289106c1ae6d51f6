"""Google/bert4keras-format checkpoints: our writer, the builders, and clear errors for bad input."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config, write_tiny_vocab
from ptuning_tf import BackboneSpec, CheckpointError, PromptClassifier, PtuningConfig, build_model
from ptuning_tf.checkpoint import save_model_dir
from ptuning_tf.models import build_transformer

GOOGLE_NAMES = [
    'bert/embeddings/word_embeddings', 'bert/embeddings/position_embeddings',
    'bert/embeddings/token_type_embeddings', 'bert/embeddings/LayerNorm/gamma',
    'bert/encoder/layer_0/attention/self/query/kernel', 'bert/encoder/layer_0/attention/self/key/bias',
    'bert/encoder/layer_0/attention/output/dense/kernel', 'bert/encoder/layer_1/intermediate/dense/kernel',
    'bert/encoder/layer_1/output/LayerNorm/beta', 'cls/predictions/transform/dense/kernel',
    'cls/predictions/transform/LayerNorm/gamma', 'cls/predictions/output_bias',
]
IDS = np.array([[101, 1, 2, 3, 4, 103, 5, 6, 7, 8, 110, 120, 130, 102]])


def _outputs(model, kind):
    return model.predict(IDS if kind == 'gpt' else [IDS, np.zeros_like(IDS)], verbose=0)


def test_variable_names_follow_google_bert(tiny_bert_dir):
    names = {n for n, _ in tf.train.list_variables(os.path.join(tiny_bert_dir, 'bert_model.ckpt'))}
    assert set(GOOGLE_NAMES) <= names
    assert sorted(os.listdir(tiny_bert_dir))[:3] == ['bert_model.ckpt.data-00000-of-00001',
                                                     'bert_model.ckpt.index', 'checkpoint']


@pytest.mark.parametrize('kind,dtype', [('bert', None), ('gpt', None), ('bert', 'float16')])
def test_round_trip_through_the_builders(kind, dtype, tmp_path):
    vocab = write_tiny_vocab(str(tmp_path / 'vocab.txt'))
    config = tiny_config(sum(1 for _ in open(vocab, encoding='utf-8')))
    original = build_transformer(config, None, kind, trainable_ids=None)
    expected = _outputs(original.model, kind)
    save_model_dir(original, str(tmp_path / 'model'), config, vocab, dtype=dtype)
    transformer, _ = build_model(BackboneSpec.from_dir(str(tmp_path / 'model')), PtuningConfig(kind=kind))
    assert transformer.model.weights[0].dtype == tf.float32
    got = _outputs(transformer.model, kind)
    if dtype is None:
        np.testing.assert_allclose(got, expected, atol=1e-5)
    else:  # weights rounded to float16: close, not equal
        np.testing.assert_allclose(got, expected, atol=0.05)
        assert os.path.getsize(str(tmp_path / 'model' / 'bert_model.ckpt.data-00000-of-00001')) < \
            sum(int(np.prod(w.shape)) for w in original.model.weights) * 4 * 0.6


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite_config(model_dir, **changes):
    path = os.path.join(model_dir, 'config.json')
    config = json.load(open(path))
    config.update(changes)
    json.dump(config, open(path, 'w'))


@pytest.mark.parametrize('breakage, message', [
    (lambda d: os.remove(os.path.join(d, 'config.json')), 'config missing'),
    (lambda d: os.remove(os.path.join(d, 'vocab.txt')), 'vocab missing'),
    (lambda d: [os.remove(os.path.join(d, f)) for f in os.listdir(d) if f.startswith('bert_model')],
     'no checkpoint'),
    (lambda d: open(os.path.join(d, 'config.json'), 'w').write('{oops'), 'not valid JSON'),
    (lambda d: _rewrite_config(d, hidden_size=48), 'does not match its config'),
    (lambda d: _rewrite_config(d, num_hidden_layers=3), 'does not match its config'),
    (lambda d: _rewrite_config(d, vocab_size=300), 'vocab_size=300'),
    (lambda d: open(os.path.join(d, 'vocab.txt'), 'a').write('多余\n'), 'vocab_size'),
    (lambda d: _rewrite_config(d, max_position_embeddings=16), 'max_position_embeddings'),
])
def test_bad_model_directories_raise_clear_errors(tiny_bert_dir, tmp_path, breakage, message):
    broken = _copy(tiny_bert_dir, str(tmp_path / 'broken'))
    breakage(broken)
    with pytest.raises(CheckpointError, match=message):
        PromptClassifier.build(broken, maxlen=32)


def test_missing_model_dir_and_partial_paths(tmp_path, tiny_bert_dir):
    with pytest.raises(CheckpointError, match='not found'):
        PromptClassifier.build(str(tmp_path / 'nope'))
    with pytest.raises(CheckpointError, match='together'):
        PromptClassifier.build(config_path=os.path.join(tiny_bert_dir, 'config.json'))


def test_vocab_without_prompt_tokens(tiny_bert_dir, tmp_path):
    from ptuning_tf import TemplateError
    broken = _copy(tiny_bert_dir, str(tmp_path / 'short'))
    lines = open(os.path.join(broken, 'vocab.txt'), encoding='utf-8').read().split('\n')
    # a vocab whose first rows are not [unusedN]: the prompt ids would be real characters
    lines[1:5] = ['甲', '乙', '丙', '丁']
    open(os.path.join(broken, 'vocab.txt'), 'w', encoding='utf-8').write('\n'.join(lines))
    with pytest.raises((CheckpointError, TemplateError), match='unused'):
        PromptClassifier.build(broken, maxlen=32)


def test_unwritable_output_directory(tmp_path):
    vocab = write_tiny_vocab(str(tmp_path / 'vocab.txt'))
    config = tiny_config(sum(1 for _ in open(vocab, encoding='utf-8')))
    transformer = build_transformer(config, None, 'bert', trainable_ids=None)
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(OSError):
        save_model_dir(transformer, str(blocker / 'model'), config, vocab)
    assert blocker.read_text() == 'x'
