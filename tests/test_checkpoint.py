"""Google/bert4keras-format checkpoints: our writer, the builders, and clear errors for bad input."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config, write_tiny_vocab
from ptuning_tf import BackboneSpec, CheckpointError, PromptClassifier, TemplateError, make_method
from ptuning_tf.checkpoint import load_variables, save_model_dir, save_variables
from ptuning_tf.models import build_transformer

IDS = np.array([[101, 1, 2, 3, 4, 103, 5, 6, 7, 8, 110, 120, 130, 102]])
H, I, P, LAYERS = 32, 64, 128, 2  # tiny_config


def google_names(kind='bert', layers=LAYERS):
    """Variable names of Google's chinese_L-12_H-768_A-12 (without the pooler/NSP head we do not use)."""
    names = ['bert/embeddings/word_embeddings', 'bert/embeddings/position_embeddings',
             'bert/embeddings/LayerNorm/gamma', 'bert/embeddings/LayerNorm/beta',
             'cls/predictions/transform/dense/kernel', 'cls/predictions/transform/dense/bias',
             'cls/predictions/transform/LayerNorm/gamma', 'cls/predictions/transform/LayerNorm/beta',
             'cls/predictions/output_bias']
    if kind == 'bert':
        names.append('bert/embeddings/token_type_embeddings')
    for i in range(layers):
        layer = 'bert/encoder/layer_%d/' % i
        for part in ('attention/self/query', 'attention/self/key', 'attention/self/value',
                     'attention/output/dense', 'intermediate/dense', 'output/dense'):
            names += [layer + part + '/kernel', layer + part + '/bias']
        for part in ('attention/output/LayerNorm', 'output/LayerNorm'):
            names += [layer + part + '/gamma', layer + part + '/beta']
    return set(names)


def _inputs(kind):
    return IDS if kind == 'gpt' else [IDS, np.zeros_like(IDS)]


def _outputs(model, kind):
    return model(_inputs(kind), training=False).numpy()


def _vocab_and_config(directory):
    vocab = write_tiny_vocab(os.path.join(str(directory), 'vocab.txt'))
    return vocab, tiny_config(sum(1 for _ in open(vocab, encoding='utf-8')))


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_variable_names_and_shapes_follow_google_bert(kind, tiny_bert_dir, tiny_gpt_dir):
    model_dir = tiny_bert_dir if kind == 'bert' else tiny_gpt_dir
    shapes = dict(tf.train.list_variables(os.path.join(model_dir, 'bert_model.ckpt')))
    assert set(shapes) == google_names(kind)
    vocab_size = json.load(open(os.path.join(model_dir, 'config.json')))['vocab_size']
    assert shapes['bert/embeddings/word_embeddings'] == [vocab_size, H]
    assert shapes['bert/embeddings/position_embeddings'] == [P, H]
    assert shapes['bert/encoder/layer_0/attention/self/query/kernel'] == [H, H]
    assert shapes['bert/encoder/layer_1/intermediate/dense/kernel'] == [H, I]
    assert shapes['bert/encoder/layer_1/output/dense/kernel'] == [I, H]
    assert shapes['cls/predictions/output_bias'] == [vocab_size]
    if kind == 'bert':
        assert shapes['bert/embeddings/token_type_embeddings'] == [2, H]
    assert sorted(os.listdir(model_dir)) == ['bert_model.ckpt.data-00000-of-00001', 'bert_model.ckpt.index',
                                            'checkpoint', 'config.json', 'vocab.txt']
    assert 'model_checkpoint_path: "bert_model.ckpt"' in open(os.path.join(model_dir, 'checkpoint')).read()


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_round_trip_through_the_builders(kind, tmp_path):
    vocab, config = _vocab_and_config(tmp_path)
    tf.keras.utils.set_random_seed(11)
    original = build_transformer(config, None, kind, trainable_ids=None)
    expected = _outputs(original.model, kind)
    model_dir = str(tmp_path / 'model')
    save_model_dir(original, model_dir, config, vocab)
    # the saved values are the model's values, under the Google names
    saved = load_variables(os.path.join(model_dir, 'bert_model.ckpt'))
    token = original.layers['Embedding-Token'].get_weights()[0]
    np.testing.assert_array_equal(saved['bert/embeddings/word_embeddings'], token)
    np.testing.assert_array_equal(saved['cls/predictions/output_bias'],
                                  original.layers['MLM-Bias'].get_weights()[0])
    # BackboneSpec + a method's build (fine-tuning: nothing frozen)
    spec = BackboneSpec.from_dir(model_dir)
    assert spec.config == config and spec.family.name == 'bert'
    transformer = make_method('finetune').build(spec, kind, None, None)
    np.testing.assert_array_equal(_outputs(transformer.model, kind), expected)
    # PromptClassifier.build (the frozen P-tuning model) reads the same weights
    clf = PromptClassifier.build(model_dir, kind=kind, maxlen=32)
    np.testing.assert_array_equal(_outputs(clf.model, kind), expected)
    # explicit files name the same backbone as the directory
    spec = BackboneSpec.resolve(config_path=os.path.join(model_dir, 'config.json'),
                                checkpoint_path=os.path.join(model_dir, 'bert_model.ckpt'),
                                vocab_path=os.path.join(model_dir, 'vocab.txt'))
    assert spec == BackboneSpec.from_dir(model_dir) == clf.spec


def test_google_checkpoint_with_extra_variables_loads(tiny_bert_dir, tmp_path):
    """Google's files also hold the pooler, the NSP head and global_step: they are ignored."""
    model_dir = str(tmp_path / 'google')
    shutil.copytree(tiny_bert_dir, model_dir)
    prefix = os.path.join(model_dir, 'bert_model.ckpt')
    variables = load_variables(prefix)
    variables.update({'bert/pooler/dense/kernel': np.ones((H, H), 'float32'),
                      'bert/pooler/dense/bias': np.zeros(H, 'float32'),
                      'cls/seq_relationship/output_weights': np.ones((2, H), 'float32'),
                      'cls/seq_relationship/output_bias': np.zeros(2, 'float32'),
                      'global_step': np.array(1000000, 'int64')})
    for name in os.listdir(model_dir):
        if name.startswith('bert_model.ckpt'):
            os.remove(os.path.join(model_dir, name))
    save_variables(prefix, variables)
    expected = _outputs(PromptClassifier.build(tiny_bert_dir, maxlen=32).model, 'bert')
    np.testing.assert_array_equal(_outputs(PromptClassifier.build(model_dir, maxlen=32).model, 'bert'),
                                  expected)


def test_float16_export_loads_as_float32(tmp_path):
    vocab, config = _vocab_and_config(tmp_path)
    original = build_transformer(config, None, 'bert', trainable_ids=None)
    model_dir = str(tmp_path / 'model16')
    save_model_dir(original, model_dir, config, vocab, dtype='float16')
    prefix = os.path.join(model_dir, 'bert_model.ckpt')
    dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
    assert set(dtypes) == google_names() and set(dtypes.values()) == {tf.float16}
    n_params = sum(int(np.prod(w.shape)) for w in original.model.weights)
    assert os.path.getsize(prefix + '.data-00000-of-00001') < n_params * 2 + 4096
    transformer = make_method('finetune').build(BackboneSpec.from_dir(model_dir), 'mlm', None, None)
    assert {w.dtype for w in transformer.model.weights} == {tf.float32}
    # exactly the float16-rounded weights, back in float32
    token = original.layers['Embedding-Token'].get_weights()[0]
    np.testing.assert_array_equal(transformer.layers['Embedding-Token'].get_weights()[0],
                                  token.astype('float16').astype('float32'))
    np.testing.assert_allclose(_outputs(transformer.model, 'bert'), _outputs(original.model, 'bert'),
                               atol=0.05)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite_config(model_dir, **changes):
    path = os.path.join(model_dir, 'config.json')
    config = json.load(open(path))
    config.update(changes)
    json.dump(config, open(path, 'w'))


def _remove_checkpoint(model_dir):
    for name in os.listdir(model_dir):
        if name.startswith('bert_model'):
            os.remove(os.path.join(model_dir, name))


def _drop_key(model_dir, key):
    path = os.path.join(model_dir, 'config.json')
    config = json.load(open(path))
    del config[key]
    json.dump(config, open(path, 'w'))


@pytest.mark.parametrize('breakage, message', [
    (lambda d: os.remove(os.path.join(d, 'config.json')), r'config missing in .*broken \(expected config.json\)'),
    (lambda d: os.remove(os.path.join(d, 'vocab.txt')), r'vocab missing in .*broken \(expected vocab.txt\)'),
    (_remove_checkpoint, r'no checkpoint \(\*\.index\) in .*broken'),
    (lambda d: open(os.path.join(d, 'config.json'), 'w').write('{oops'), 'not valid JSON'),
    (lambda d: _drop_key(d, 'hidden_size'), 'lacks "hidden_size"'),
    (lambda d: _rewrite_config(d, hidden_size=48),
     r'does not match its config: bert/embeddings/word_embeddings is \[{V}, 32\], config says \[{V}, 48\]'),
    (lambda d: _rewrite_config(d, num_hidden_layers=3), 'does not match its config: no .*layer_2'),
    (lambda d: _rewrite_config(d, vocab_size=300), 'has {V} tokens but config .* says vocab_size=300'),
    (lambda d: open(os.path.join(d, 'vocab.txt'), 'a', encoding='utf-8').write('多余\n'),
     'vocab .* has {V1} tokens'),
])
def test_bad_model_directories_raise_clear_errors(tiny_bert_dir, tmp_path, breakage, message):
    broken = _copy(tiny_bert_dir, str(tmp_path / 'broken'))
    size = len(open(os.path.join(broken, 'vocab.txt'), encoding='utf-8').read().splitlines())
    breakage(broken)
    with pytest.raises(CheckpointError, match=message.replace('{V}', str(size)).replace('{V1}', str(size + 1))):
        PromptClassifier.build(broken, maxlen=32)


def test_maxlen_beyond_position_embeddings(tiny_bert_dir):
    with pytest.raises(CheckpointError, match="maxlen 200 exceeds the model's max_position_embeddings 128"):
        PromptClassifier.build(tiny_bert_dir, maxlen=200)
    assert PromptClassifier.build(tiny_bert_dir, maxlen=128).template.maxlen == 128


def test_missing_model_dir_and_explicit_paths(tmp_path, tiny_bert_dir):
    with pytest.raises(CheckpointError, match='model directory not found: .*nope'):
        PromptClassifier.build(str(tmp_path / 'nope'))
    config = os.path.join(tiny_bert_dir, 'config.json')
    vocab = os.path.join(tiny_bert_dir, 'vocab.txt')
    with pytest.raises(CheckpointError, match='together .*missing: checkpoint, vocab'):
        PromptClassifier.build(config_path=config)
    with pytest.raises(CheckpointError, match='vocab file not found'):
        PromptClassifier.build(config_path=config, checkpoint_path=os.path.join(tiny_bert_dir, 'bert_model.ckpt'),
                               vocab_path=str(tmp_path / 'vocab.txt'))
    with pytest.raises(CheckpointError, match='cannot read checkpoint .*missing.ckpt'):
        PromptClassifier.build(config_path=config, checkpoint_path=str(tmp_path / 'missing.ckpt'),
                               vocab_path=vocab, maxlen=32)


def test_vocab_without_prompt_tokens(tiny_bert_dir, tmp_path):
    broken = _copy(tiny_bert_dir, str(tmp_path / 'short'))
    lines = open(os.path.join(broken, 'vocab.txt'), encoding='utf-8').read().split('\n')
    # a vocab whose first rows are not [unusedN]: the prompt ids would be real characters
    lines[1:5] = ['甲', '乙', '丙', '丁']
    open(os.path.join(broken, 'vocab.txt'), 'w', encoding='utf-8').write('\n'.join(lines))
    with pytest.raises(TemplateError, match=r"prompt id 1 is '甲' in the vocabulary, not a reserved \[unusedN\]"):
        PromptClassifier.build(broken, maxlen=32)


def test_unwritable_output_directory(tmp_path):
    vocab, config = _vocab_and_config(tmp_path)
    transformer = build_transformer(config, None, 'bert', trainable_ids=None)
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    before = sorted(os.listdir(str(tmp_path)))
    with pytest.raises(CheckpointError, match='cannot write .*file/model'):
        save_model_dir(transformer, str(blocker / 'model'), config, vocab)
    assert blocker.read_text() == 'x' and sorted(os.listdir(str(tmp_path))) == before


def test_rewrite_replaces_the_directory_atomically(tmp_path):
    vocab, config = _vocab_and_config(tmp_path)
    model_dir = str(tmp_path / 'out' / 'model')
    first = build_transformer(config, None, 'bert', trainable_ids=None)
    save_model_dir(first, model_dir, config, vocab, extra_files={'NOTES': 'one'})
    second = build_transformer(config, None, 'bert', trainable_ids=None)
    second.layers['Embedding-Token'].set_weights([np.ones((config['vocab_size'], H), 'float32')])
    save_model_dir(second, model_dir, config, vocab)
    assert os.listdir(str(tmp_path / 'out')) == ['model']  # no .tmp-/.old- leftovers
    assert 'NOTES' not in os.listdir(model_dir)  # replaced as a whole, not merged
    saved = load_variables(os.path.join(model_dir, 'bert_model.ckpt'))
    assert np.all(saved['bert/embeddings/word_embeddings'] == 1)

    def broken(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    import ptuning_tf.checkpoint as checkpoint_module
    original_save = checkpoint_module.save_variables
    checkpoint_module.save_variables = broken
    try:
        with pytest.raises(CheckpointError, match='No space left'):
            save_model_dir(first, model_dir, config, vocab)
    finally:
        checkpoint_module.save_variables = original_save
    # the failed write left the previous model in place and nothing else
    assert os.listdir(str(tmp_path / 'out')) == ['model']
    saved = load_variables(os.path.join(model_dir, 'bert_model.ckpt'))
    assert np.all(saved['bert/embeddings/word_embeddings'] == 1)


def test_gpt_checkpoint_loaded_as_bert_names_the_variable_and_suggests_kind(tiny_gpt_dir):
    # a GPT has no segment embeddings; bert4keras raised TensorFlow's NotFoundError here
    with pytest.raises(CheckpointError, match=r"checkpoint .*bert_model.ckpt has no variable "
                       r"bert/embeddings/token_type_embeddings, which a masked LM needs; .*--kind lm"):
        PromptClassifier.build(tiny_gpt_dir, kind='bert', maxlen=32)


def test_checkpoint_variables_that_do_not_fit_the_config(tiny_bert_dir, tmp_path):
    broken = _copy(tiny_bert_dir, str(tmp_path / 'broken'))
    _rewrite_config(broken, intermediate_size=128)  # not caught by the early embedding/layer check
    with pytest.raises(CheckpointError, match=r'does not match its config: bert/encoder/layer_0/'
                       r'intermediate/dense/kernel is \[32, 64\], the model needs \[32, 128\]'):
        PromptClassifier.build(broken, maxlen=32)
    names = google_names('bert')
    variables = {n: v for n, v in load_variables(os.path.join(tiny_bert_dir, 'bert_model.ckpt')).items()
                 if n != 'cls/predictions/transform/dense/kernel'}
    assert len(variables) == len(names) - 1
    save_variables(os.path.join(broken, 'bert_model.ckpt'), variables)
    _rewrite_config(broken, intermediate_size=64)
    with pytest.raises(CheckpointError, match='has no variable cls/predictions/transform/dense/kernel, '
                                              'which a masked LM needs$'):
        PromptClassifier.build(broken, maxlen=32)


@pytest.mark.parametrize('token', ['[UNK]', '[CLS]', '[SEP]', '[MASK]', '[PAD]'])
def test_vocab_without_a_special_token_names_file_and_token(tiny_bert_dir, tmp_path, token):
    broken = _copy(tiny_bert_dir, str(tmp_path / 'broken'))
    path = os.path.join(broken, 'vocab.txt')
    lines = open(path, encoding='utf-8').read().split('\n')
    lines[lines.index(token)] = '甲'  # same size, so only the missing token can be at fault
    open(path, 'w', encoding='utf-8').write('\n'.join(lines))
    with pytest.raises(CheckpointError, match=r'vocab .*broken/vocab.txt has no %s token'
                       % token.replace('[', r'\[').replace(']', r'\]')):
        PromptClassifier.build(broken, maxlen=32)


@pytest.mark.parametrize('umask', [0o022, 0o027])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask):
    from ptuning_tf.checkpoint import atomic_write_text
    vocab, config = _vocab_and_config(tmp_path)
    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / 'a.json'), '{}')  # mkstemp alone would give 0600
        model_dir = str(tmp_path / 'model')
        save_model_dir(build_transformer(config, None, 'bert', trainable_ids=None), model_dir, config, vocab)
    finally:
        os.umask(old)
    assert os.stat(str(tmp_path / 'a.json')).st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(model_dir).st_mode & 0o777 == 0o777 & ~umask
