"""Pretraining on a tiny corpus: vocab layout, masking, gather == naive loss, resume, export."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from bert4keras.tokenizers import Tokenizer

from ptuning_tf import BackboneSpec, PtuningConfig, build_model
from ptuning_tf.pretrain import (PretrainConfig, Pretrainer, WarmupLinearDecay, build_vocab,
                                 mask_tokens, pack_sequences, write_vocab)

CORPUS = ['今天天气很好，我们去公园散步。', '这家店的服务很好，价格也便宜。', '质量太差了，不会再买。',
          '人民日报发表社论，迎接新的一年。', '送货很快，包装完好，推荐购买。', 'iPhone 12 的电池不错。'] * 8


@pytest.fixture(scope='module')
def corpus_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('corpus')
    corpus = d / 'corpus.txt'
    corpus.write_text('\n'.join(CORPUS) + '\n', encoding='utf-8')
    vocab = str(d / 'vocab.txt')
    write_vocab(build_vocab(CORPUS, min_count=1), vocab)
    return str(corpus), vocab


def tiny(kind='bert', **kw):
    args = dict(kind=kind, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, seq_len=16, batch_size=4, learning_rate=1e-3,
                warmup_steps=2, total_steps=20, heldout_fraction=0.2)
    args.update(kw)
    return PretrainConfig(**args)


def test_vocab_layout_matches_the_chinese_bert_vocab(corpus_files):
    _, vocab_path = corpus_files
    vocab = open(vocab_path, encoding='utf-8').read().split('\n')
    assert vocab[0] == '[PAD]' and vocab[1:100] == ['[unused%d]' % i for i in range(1, 100)]
    assert vocab[100:104] == ['[UNK]', '[CLS]', '[SEP]', '[MASK]']
    real = '../shared/data/vocab/bert_chinese_vocab.txt'
    if os.path.exists(real):
        assert open(real, encoding='utf-8').read().split('\n')[:104] == vocab[:104]
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    ids = tokenizer.encode('价格很好')[0]
    assert ids[0] == 101 and ids[-1] == 102 and 100 not in ids  # no [UNK]
    assert tokenizer.encode('iphone 12')[0].count(100) == 0


def test_vocab_is_ordered_by_frequency_with_min_count():
    vocab = build_vocab(['好好好好坏坏坏差'], min_count=2)
    assert vocab[104:] == ['好', '坏']


def test_pack_sequences():
    rows = pack_sequences([[5, 6, 7], [8, 9], [10, 11, 12, 13]], 5, 101, 102)
    # the stream 5 6 7 [SEP] 8 9 [SEP] 10 11 12 13 [SEP] cut into rows of 4 after [CLS]
    assert rows.tolist() == [[101, 5, 6, 7, 102], [101, 8, 9, 102, 10], [101, 11, 12, 13, 102]]
    assert pack_sequences([[5, 6, 7, 8, 9, 10]], 5, 101, 102).tolist() == [[101, 5, 6, 7, 8]]


def test_mask_tokens_statistics():
    rng = np.random.RandomState(0)
    batch = rng.randint(104, 1000, size=(200, 64)).astype('int32')
    batch[:, 0], batch[:, -1], batch[:10, 30:] = 101, 102, 0
    inputs, positions, targets = mask_tokens(batch, rng, 1000, 103)
    chosen = np.zeros_like(batch, bool)
    chosen[positions[:, 0], positions[:, 1]] = True
    normal = batch >= 104
    assert not chosen[~normal].any()  # never [CLS]/[SEP]/[PAD]
    assert chosen.sum() / normal.sum() == pytest.approx(0.15, abs=0.01)
    np.testing.assert_array_equal(targets, batch[chosen])
    as_mask = (inputs[chosen] == 103).mean()
    kept = (inputs[chosen] == batch[chosen]).mean()
    assert as_mask == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.02)
    np.testing.assert_array_equal(inputs[~chosen], batch[~chosen])


def test_learning_rate_schedule():
    schedule = WarmupLinearDecay(1.0, 10, 110)
    assert float(schedule(0)) == 0 and float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0) and float(schedule(60)) == pytest.approx(0.55)
    assert float(schedule(110)) == pytest.approx(0.1) and float(schedule(1000)) == pytest.approx(0.1)


def _naive_loss(trainer, ids, positions, targets):
    """Logits at every position from the full model, then the chosen positions only."""
    logits = trainer.transformer.model(trainer._inputs(ids), training=False)
    if trainer.config.kind == 'bert':
        picked = tf.gather_nd(logits, positions)
        return float(tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            targets, picked, from_logits=True)))
    labels, logits = ids[:, 1:].numpy(), logits[:, :-1].numpy()
    keep = labels > 0
    ce = tf.keras.losses.sparse_categorical_crossentropy(labels[keep], logits[keep], from_logits=True)
    return float(tf.reduce_mean(ce))


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_gathered_loss_equals_naive_loss(kind, corpus_files, tmp_path):
    corpus, vocab = corpus_files
    trainer = Pretrainer(tiny(kind), vocab, corpus, str(tmp_path))
    rows = trainer._rows_for(0).copy()
    rows[0, -3:] = 0  # some padding: the GPT loss must ignore it
    ids, positions, targets = trainer._batch(rows, np.random.RandomState(1))
    gathered, _ = trainer._loss(ids, positions, targets, False)
    assert float(gathered) == pytest.approx(_naive_loss(trainer, ids, positions, targets), rel=1e-5)


def _weights(trainer):
    return [w.numpy() for w in trainer.transformer.model.weights]


def test_resume_continues_from_the_saved_step(corpus_files, tmp_path):
    corpus, vocab = corpus_files
    keras.utils.set_random_seed(0)
    first = Pretrainer(tiny(), vocab, corpus, str(tmp_path / 'a'))
    first.train(max_steps=2, eval_every=100, log=lambda m: None)
    keras.utils.set_random_seed(1)  # a different init: restored weights must win
    resumed = Pretrainer(tiny(), vocab, corpus, str(tmp_path / 'a'))
    assert int(resumed.step.numpy()) == 2
    for a, b in zip(_weights(first), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    resumed.train(max_steps=2, eval_every=100, log=lambda m: None)
    assert int(resumed.step.numpy()) == 4

    keras.utils.set_random_seed(0)
    straight = Pretrainer(tiny(), vocab, corpus, str(tmp_path / 'b'))
    straight.train(max_steps=4, eval_every=100, log=lambda m: None)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_exported_model_loads_through_the_builders(kind, corpus_files, tmp_path):
    corpus, vocab = corpus_files
    trainer = Pretrainer(tiny(kind), vocab, corpus, str(tmp_path / 'work'))
    trainer.train(max_steps=1, eval_every=1, log=lambda m: None)
    trainer.export(str(tmp_path / 'model'), dtype=None)
    assert json.load(open(str(tmp_path / 'model' / 'PRETRAIN.json')))['step'] == 1
    transformer, _ = build_model(BackboneSpec.from_dir(str(tmp_path / 'model')), PtuningConfig(kind=kind))
    ids = tf.constant(trainer._rows_for(0))
    inputs = trainer._inputs(ids)
    np.testing.assert_allclose(transformer.model(inputs).numpy(),
                               trainer.transformer.model(inputs).numpy(), atol=1e-5)
    assert len(open(str(tmp_path / 'work' / 'log.jsonl')).readlines()) == 1


def test_cli_pretrain_smoke(corpus_files, tmp_path, capsys):
    from ptuning_tf.cli import main
    corpus, vocab = corpus_files
    args = ['pretrain', '--kind', 'bert', '--work-dir', str(tmp_path / 'w'), '--out', str(tmp_path / 'o'),
            '--hidden-size', '32', '--layers', '1', '--heads', '2', '--intermediate-size', '64',
            '--seq-len', '16', '--batch-size', '4', '--max-steps', '2', '--corpus', corpus, '--vocab', vocab]
    assert main(args) == 0
    assert sorted(os.listdir(str(tmp_path / 'o')))[:2] == ['PRETRAIN.json', 'bert_model.ckpt.data-00000-of-00001']
    assert main(args) == 0  # runs again: resumes at step 2
    assert json.load(open(str(tmp_path / 'o' / 'PRETRAIN.json')))['step'] == 4
