"""Backbone families: RoFormer (rotary positions) through builders, P-tuning, v2, prompts, pretraining."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_model_dir
from ptuning_tf import (BackboneSpec, CheckpointError, DataError, PromptClassifier, PromptFileError,
                        load, save)
from ptuning_tf.families import POSITION_EMBEDDINGS, detect_family, get_family
from ptuning_tf.pretrain import PretrainConfig, Pretrainer, build_vocab, write_vocab
from test_checkpoint import google_names
from test_layers import _all_weights, _assert_only_rows_changed

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜']
IDS = np.array([[101, 1, 2, 3, 4, 103, 5, 6, 7, 8, 110, 120, 130, 102]])


def _dir(kind, roformer, roformer_lm):
    return roformer if kind == 'bert' else roformer_lm


def _ckpt(model_dir):
    return os.path.join(model_dir, 'bert_model.ckpt')


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_roformer_checkpoint_has_bert_names_without_a_position_table(kind, tiny_roformer_dir,
                                                                       tiny_roformer_lm_dir):
    model_dir = _dir(kind, tiny_roformer_dir, tiny_roformer_lm_dir)
    names = {n for n, _ in tf.train.list_variables(_ckpt(model_dir))}
    assert names == google_names(kind) - {POSITION_EMBEDDINGS}
    assert json.load(open(os.path.join(model_dir, 'config.json')))['model'] == 'roformer'


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_plain_bert4keras_loads_the_roformer_as_we_build_it(kind, tiny_roformer_dir, tiny_roformer_lm_dir):
    from bert4keras.models import build_transformer_model
    model_dir = _dir(kind, tiny_roformer_dir, tiny_roformer_lm_dir)
    extra = dict(application='lm', segment_vocab_size=0) if kind == 'gpt' else {}
    theirs = build_transformer_model(os.path.join(model_dir, 'config.json'), _ckpt(model_dir),
                                     model='roformer', with_mlm=True, **extra)
    ours = PromptClassifier.build(model_dir, kind=kind, maxlen=32)
    assert ours.spec.family.name == 'roformer'
    inputs = IDS if kind == 'gpt' else [IDS, np.zeros_like(IDS)]
    logits = ours.model.predict(inputs, verbose=0)
    probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(theirs.predict(inputs, verbose=0), probs, atol=1e-5, rtol=0)


def test_family_is_read_from_config_or_recognised_by_variables():
    bert_vars = google_names('bert')
    roformer_vars = bert_vars - {POSITION_EMBEDDINGS}
    assert detect_family({}, bert_vars).name == 'bert'
    assert detect_family({}, roformer_vars).name == 'roformer'  # a user's roformer_chinese_base
    assert detect_family({'model': 'roformer'}, roformer_vars).name == 'roformer'
    assert detect_family({'model': 'roformer'}).name == 'roformer'
    with pytest.raises(ValueError, match='has a position table'):
        detect_family({'model': 'roformer'}, bert_vars)
    with pytest.raises(ValueError, match='lacks a position table'):
        detect_family({'model': 'bert'}, roformer_vars)
    with pytest.raises(ValueError, match="unknown model family 'xlnet'"):
        get_family('xlnet')


def test_roformer_without_model_key_is_recognised_and_a_contradiction_is_one_error(
        tiny_roformer_dir, tiny_bert_dir, tmp_path):
    plain = str(tmp_path / 'plain')
    shutil.copytree(tiny_roformer_dir, plain)
    config = json.load(open(os.path.join(plain, 'config.json')))
    del config['model']  # as ZhuiyiTechnology's roformer_chinese_base ships it
    json.dump(config, open(os.path.join(plain, 'config.json'), 'w'))
    assert BackboneSpec.from_dir(plain).family.name == 'roformer'
    assert PromptClassifier.build(plain, maxlen=32).spec.family.name == 'roformer'
    liar = str(tmp_path / 'liar')
    shutil.copytree(tiny_bert_dir, liar)
    config = json.load(open(os.path.join(liar, 'config.json')))
    json.dump(dict(config, model='roformer'), open(os.path.join(liar, 'config.json'), 'w'))
    with pytest.raises(CheckpointError, match="config says model 'roformer'"):
        PromptClassifier.build(liar, maxlen=32)


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_roformer_ptuning_changes_only_prompt_rows(kind, tiny_roformer_dir, tiny_roformer_lm_dir,
                                                   tiny_examples):
    clf = PromptClassifier.build(_dir(kind, tiny_roformer_dir, tiny_roformer_lm_dir), kind=kind, maxlen=32)
    assert [w.name for w in clf.model.trainable_weights] == [clf.embedding.embeddings.name]
    before = _all_weights(clf.model)
    clf.fit(tiny_examples, epochs=2, batch_size=4, learning_rate=1e-2, verbose=0)
    _assert_only_rows_changed(clf, before, range(1, 9))


@pytest.mark.parametrize('method', ['ptuning', 'ptuning_v2'])
def test_causal_roformer_cannot_see_future_tokens(method, tiny_roformer_lm_dir):
    clf = PromptClassifier.build(tiny_roformer_lm_dir, kind='gpt', maxlen=32, method=method,
                                 **(dict(prompt_length=4) if method == 'ptuning_v2' else {}))
    a = np.array([[101, 1, 2, 3, 4, 110, 111, 112, 113]])
    b = a.copy()
    b[0, 7:] = [120, 121]
    out_a, out_b = (clf.transformer.model.predict(x, verbose=0) for x in (a, b))
    np.testing.assert_allclose(out_a[0, :7], out_b[0, :7], atol=1e-6, rtol=0)
    assert not np.allclose(out_a[0, 7:], out_b[0, 7:])


@pytest.mark.parametrize('options', [dict(method='ptuning_v2', prompt_length=4, head='linear'),
                                     dict(prompt_encoder='mlp')], ids=['v2-linear', 'mlp-encoder'])
def test_roformer_variants_train_only_their_prompt_parameters(options, tiny_roformer_dir, tiny_examples):
    clf = PromptClassifier.build(tiny_roformer_dir, maxlen=32, **options)
    frozen = {w.name: w.numpy().copy() for w in clf.model.weights
              if not any(w is t for t in clf.model.trainable_weights)}
    assert frozen and clf.model.trainable_weights
    clf.fit(tiny_examples, epochs=2, batch_size=4, learning_rate=1e-2, verbose=0)
    for w in clf.model.weights:
        if w.name in frozen and w.name != clf.embedding.embeddings.name:
            assert np.array_equal(frozen[w.name], w.numpy()), w.name


def test_roformer_prompt_round_trips_and_refuses_a_bert_base(tiny_roformer_dir, tiny_bert_dir, tmp_path):
    clf = PromptClassifier.build(tiny_roformer_dir, maxlen=32)
    clf.set_state({'rows': np.random.RandomState(5).randn(8, 32).astype('float32')})
    path = save(clf, str(tmp_path / 'p'))
    fresh = load(path, tiny_roformer_dir)
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    with pytest.raises(PromptFileError, match='trained on a roformer model; .* is a bert model'):
        load(path, tiny_bert_dir)


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_roformer_pretraining_exports_resumes_and_carries_its_log(kind, tmp_path):
    corpus = ['今天天气很好，我们去公园散步。', '这家店的服务很好，价格也便宜。', '质量太差了，不会再买。',
              '人民日报发表社论，迎接新的一年。', '送货很快，包装完好，推荐购买。'] * 10
    (tmp_path / 'c.txt').write_text('\n'.join(corpus) + '\n', encoding='utf-8')
    vocab = str(tmp_path / 'v.txt')
    write_vocab(build_vocab(corpus, min_count=1), vocab)
    config = PretrainConfig(kind=kind, model='roformer', hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, seq_len=16, batch_size=4,
                            warmup_steps=2, total_steps=50, decay_steps=10, rewarm_steps=4,
                            heldout_fraction=0.2)
    first = Pretrainer(config, vocab, str(tmp_path / 'c.txt'), str(tmp_path / 'w1'))
    first.train(max_steps=3, eval_every=3, log=lambda m: None)
    out = str(tmp_path / 'model')
    first.export(out)
    assert {n for n, _ in tf.train.list_variables(_ckpt(out))} == \
        google_names(kind) - {POSITION_EMBEDDINGS} - ({'bert/embeddings/token_type_embeddings'}
                                                      if kind == 'gpt' else set())
    assert json.load(open(os.path.join(out, 'PRETRAIN.json')))['step'] == 3
    # next session: a new work dir, the exported weights, step 3, Adam restarted with warm-up
    second = Pretrainer(config, os.path.join(out, 'vocab.txt'), str(tmp_path / 'c.txt'),
                        str(tmp_path / 'w2'), resume_from=out)
    assert int(second.step.numpy()) == 3 and int(second.optimizer.iterations.numpy()) == 0
    exported = {w.name: w.numpy() for w in first.transformer.model.weights}
    for w in second.transformer.model.weights:  # float16 export: equal to fp16 precision
        np.testing.assert_allclose(w.numpy(), exported[w.name], rtol=1e-3, atol=1e-4)
    schedule = second.optimizer._learning_rate  # the schedule object (tf_keras keeps it here)
    # the optimizer calls it with its own count, from 0: re-warm-up, step 1 of 4, then the peak
    assert float(schedule(0)) == pytest.approx(config.learning_rate / 4)
    assert float(schedule(4)) == pytest.approx(config.learning_rate)
    before = [w.numpy().copy() for w in second.transformer.model.trainable_weights]
    second.train(max_steps=3, eval_every=3, log=lambda m: None)
    moved = [np.abs(w.numpy() - b).max() for w, b in zip(second.transformer.model.trainable_weights, before)]
    assert min(moved) > 0  # every weight learns after a resume (a zero rate once froze them all)
    second.export(out)
    log = [json.loads(line) for line in open(os.path.join(out, 'log.jsonl'))]
    assert [m.get('step') for m in log] == [3, 3, 6]
    assert log[1]['event'] == 'resume' and log[1]['optimizer'] == 'restarted'
    # restarting within the work dir keeps its start; another start needs a fresh work dir
    assert int(Pretrainer(config, vocab, str(tmp_path / 'c.txt'), str(tmp_path / 'w2'),
                          resume_from=out).step.numpy()) == 6
    other = str(tmp_path / 'other')
    first.export(other)
    for work in ('w1', 'w2'):  # from scratch / resumed from `out`
        with pytest.raises(DataError, match='fresh --work-dir'):
            Pretrainer(config, vocab, str(tmp_path / 'c.txt'), str(tmp_path / work), resume_from=other)
    with pytest.raises(Exception, match='seq_len=16'):  # another recipe cannot resume this run
        Pretrainer(PretrainConfig(**dict(config.__dict__, seq_len=8)), vocab,
                   str(tmp_path / 'c.txt'), str(tmp_path / 'w3'), resume_from=out)


def test_learning_rate_stays_constant_until_the_decay_steps():
    from ptuning_tf.pretrain import WarmupLinearDecay
    schedule = WarmupLinearDecay(1e-3, 10, 110, decay_steps=50)
    got = np.array([float(schedule(s)) for s in range(0, 130)])
    assert got[5] == pytest.approx(5e-4) and np.allclose(got[10:61], 1e-3)
    assert got[85] == pytest.approx(1e-3 * (1 - 0.9 * 25 / 50))
    assert np.allclose(got[110:], 1e-4)
