"""Pretraining on a tiny corpus: vocab layout, masking, gather == naive loss, LM shift, schedule,
resume, export."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from bert4keras.tokenizers import Tokenizer

from ptuning_tf import BackboneSpec, DataError, PromptClassifier, make_method
from ptuning_tf.kinds import get_kind
from ptuning_tf.checkpoint import transformer_variables
from ptuning_tf.data import shared_dir
from ptuning_tf.pretrain import (SPECIAL_TOKENS, PretrainConfig, Pretrainer, WarmupLinearDecay,
                                 build_vocab, pack_sequences, write_vocab)

CORPUS = ['今天天气很好，我们去公园散步。', '这家店的服务很好，价格也便宜。', '质量太差了，不会再买。',
          '人民日报发表社论，迎接新的一年。', '送货很快，包装完好，推荐购买。', 'iPhone 12 的电池不错。'] * 8
SPECIALS = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]']
QUIET = dict(eval_every=100, log=lambda m: None)


def tiny(kind='bert', **kw):
    args = dict(kind=kind, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, seq_len=16, batch_size=4, learning_rate=1e-3,
                warmup_steps=2, total_steps=20, heldout_fraction=0.2, dropout=0.0, seed=0)
    args.update(kw)
    return PretrainConfig(**args)


def _record(trainer):
    """Log (step, ids, targets) of every training step the trainer takes."""
    seen, step_fn = [], trainer._train_step

    def recording(ids, targets):
        seen.append((int(trainer.step.numpy()), ids.numpy(), targets.numpy()))
        return step_fn(ids, targets)
    trainer._train_step = recording
    return seen


def _weights(trainer):
    return [w.numpy() for w in trainer.transformer.model.weights]


@pytest.fixture(scope='module')
def corpus_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('corpus')
    corpus = d / 'corpus.txt'
    corpus.write_text('\n'.join(CORPUS) + '\n', encoding='utf-8')
    vocab = str(d / 'vocab.txt')
    write_vocab(build_vocab(CORPUS, min_count=1), vocab)
    return str(corpus), vocab


@pytest.fixture(scope='module')
def straight(corpus_files, tmp_path_factory):
    """An uninterrupted 4-step BERT run, with the batches it trained on."""
    corpus, vocab = corpus_files
    keras.utils.set_random_seed(0)
    trainer = Pretrainer(tiny(), vocab, corpus, str(tmp_path_factory.mktemp('straight')))
    step_fn = trainer._train_step
    seen = _record(trainer)
    trainer.train(max_steps=4, **QUIET)
    # traced once, plus once more for the variables the first call creates; not per batch shape
    assert step_fn.experimental_get_tracing_count() <= 2
    return trainer, seen


@pytest.fixture(scope='module')
def gpt(corpus_files, tmp_path_factory):
    corpus, vocab = corpus_files
    keras.utils.set_random_seed(3)
    work = tmp_path_factory.mktemp('gpt')
    trainer = Pretrainer(tiny('gpt'), vocab, corpus, str(work / 'work'))
    trainer.train(max_steps=1, eval_every=1, snapshot_dir=str(work / 'snapshots'), log=lambda m: None)
    return trainer, work


# --- vocabulary ---------------------------------------------------------------------------------

def test_vocab_layout_and_tokenizer(corpus_files):
    _, vocab_path = corpus_files
    with open(vocab_path, encoding='utf-8') as f:
        vocab = f.read().split('\n')
    assert vocab[-1] == '' and '' not in vocab[:-1]  # one token a line, newline-terminated
    vocab = vocab[:-1]
    assert SPECIAL_TOKENS == SPECIALS and vocab[:104] == SPECIALS
    assert vocab[0] == '[PAD]' and vocab[1] == '[unused1]' and vocab[99] == '[unused99]'
    assert vocab[100:104] == ['[UNK]', '[CLS]', '[SEP]', '[MASK]']
    assert len(set(vocab)) == len(vocab)
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    assert tokenizer._vocab_size == len(vocab)
    assert (tokenizer._token_pad_id, tokenizer._token_unk_id, tokenizer._token_start_id,
            tokenizer._token_end_id, tokenizer._token_mask_id) == (0, 100, 101, 102, 103)
    text = '今天天气很好，价格便宜。'
    ids = tokenizer.encode(text)[0]
    assert ids == [101] + [vocab.index(c) for c in text] + [102]
    assert all(i >= 104 for i in ids[1:-1])
    # Latin words: whole if frequent, else spelled from pieces, never [UNK]
    assert tokenizer.tokenize('iPhone 12')[1:-1] == ['iphone', '12']
    assert 100 not in tokenizer.encode('ion 1 12 iphone')[0]  # i ##o ##n, 1, 12, iphone
    assert tokenizer.encode('猫')[0] == [101, 100, 102]  # unseen character


def test_vocab_prefix_equals_the_real_chinese_bert_vocab(corpus_files):
    try:
        real = os.path.join(shared_dir(), 'data', 'vocab', 'bert_chinese_vocab.txt')
    except DataError:
        pytest.skip('../shared not available')
    if not os.path.exists(real):
        pytest.skip('bert_chinese_vocab.txt not available')
    with open(real, encoding='utf-8') as f:
        real_vocab = f.read().split('\n')
    with open(corpus_files[1], encoding='utf-8') as f:
        ours = f.read().split('\n')
    assert real_vocab[:104] == ours[:104]


def test_vocab_is_ordered_by_frequency_with_min_count():
    text = '丁戊丙乙甲乙丙甲甲丁乙甲乙甲丙甲乙甲'  # 甲 7, 乙 5, 丙 3, 丁 2, 戊 1
    assert build_vocab([text], min_count=1)[104:] == ['甲', '乙', '丙', '丁', '戊']
    assert build_vocab([text], min_count=2)[104:] == ['甲', '乙', '丙', '丁']
    assert build_vocab([text[:9], text[9:]], min_count=3)[104:] == ['甲', '乙', '丙']  # counts add up
    assert build_vocab([text], min_count=8) == SPECIALS
    assert build_vocab([text], min_count=1, max_size=106) == SPECIALS + ['甲', '乙']  # size cap


def test_vocab_keeps_frequent_words_and_their_pieces(tmp_path):
    vocab = build_vocab(['Hello world 好', 'hello WORLD', 'hello there'], min_count=2)
    body = vocab[104:]
    assert {'hello', 'world', 'h', 'w', '##e', '##l', '##o', '##r', '##d'} <= set(body)
    assert 'there' not in body and 't' not in body  # seen once
    assert body.index('##l') < body.index('h')  # ##l: 7 times, h: 3 times
    path = str(tmp_path / 'vocab.txt')
    write_vocab(vocab, path)
    tokenizer = Tokenizer(path, do_lower_case=True)
    assert tokenizer.tokenize('HELLO hold')[1:-1] == ['hello', 'h', '##o', '##l', '##d']


# --- masking and packing ------------------------------------------------------------------------

def test_pack_sequences_rows():
    rows = pack_sequences([[5, 6, 7], [8, 9], [10, 11, 12, 13]], 5, 101, 102)
    # the stream 5 6 7 [SEP] 8 9 [SEP] 10 11 12 13 [SEP] cut into rows of 4 after [CLS]
    assert rows.tolist() == [[101, 5, 6, 7, 102], [101, 8, 9, 102, 10], [101, 11, 12, 13, 102]]
    assert rows.dtype == np.int32
    # the tail that does not fill a row is dropped, never padded
    assert pack_sequences([[5, 6, 7, 8, 9, 10]], 5, 101, 102).tolist() == [[101, 5, 6, 7, 8]]
    assert pack_sequences([[5]], 5, 101, 102).shape == (0, 5)
    assert pack_sequences([], 5, 101, 102).shape == (0, 5)


def test_pack_sequences_loses_no_token_but_the_tail():
    rng = np.random.RandomState(0)
    texts = [list(rng.randint(104, 500, size=rng.randint(1, 40))) for _ in range(300)]
    rows = pack_sequences(texts, 16, 101, 102)
    stream = [t for text in texts for t in text + [102]]
    assert rows.shape == (len(stream) // 15, 16)
    assert (rows[:, 0] == 101).all() and (rows != 0).all()
    body = rows[:, 1:].ravel().tolist()
    assert body == stream[:len(body)] and len(stream) - len(body) < 15


# --- losses -------------------------------------------------------------------------------------

def _log_softmax(logits):
    logits = logits.astype('float64')
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_gathered_mlm_loss_equals_the_naive_loss(straight):
    """Head at the masked positions only == logits everywhere from the full model, then masked."""
    trainer, _ = straight
    ids, targets = trainer._batch(trainer._rows_for(7), np.random.RandomState(5))
    labels = targets.numpy().astype('int64')
    chosen = labels != 0
    assert 0 < chosen.sum() < ids.shape[0] * ids.shape[1] // 4
    loss, acc = trainer._loss(ids, targets, False)

    logits = trainer.transformer.model(trainer.kind.inputs(ids), training=False)  # [B, L, V]
    assert logits.shape == tuple(ids.shape) + (trainer.vocab_size,)
    nll = -np.take_along_axis(_log_softmax(logits.numpy()), labels[..., None], -1)[..., 0]
    assert float(loss) == pytest.approx((nll * chosen).sum() / chosen.sum(), abs=1e-5)
    right = (logits.numpy().argmax(-1) == labels) & chosen
    assert float(acc) == pytest.approx(right.sum() / chosen.sum(), abs=1e-6)

    # and the same gradient, so training on the gathered form trains the same objective
    variables = trainer.transformer.model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        gathered, _ = trainer._loss(ids, targets, True)
        full = trainer.transformer.model(trainer.kind.inputs(ids), training=True)
        ce = tf.keras.losses.sparse_categorical_crossentropy(labels, full, from_logits=True)
        naive = tf.reduce_sum(ce * chosen.astype('float32')) / chosen.sum()
    for g1, g2 in zip(tape.gradient(gathered, variables), tape.gradient(naive, variables)):
        g1, g2 = tf.convert_to_tensor(g1).numpy(), tf.convert_to_tensor(g2).numpy()
        np.testing.assert_allclose(g1, g2, atol=1e-6, rtol=1e-4)


def test_no_masked_position_gives_zero_loss_not_nan(straight):
    trainer, _ = straight
    ids = tf.constant(trainer._rows_for(0))
    loss, acc = trainer._loss(ids, tf.zeros_like(ids), False)
    assert float(loss) == 0 and float(acc) == 0


def test_gpt_loss_predicts_the_next_token_and_ignores_padding(gpt):
    trainer, _ = gpt
    rows = trainer._rows_for(3).copy()
    rows[0, -4:] = 0
    rows[1, 9:] = 0
    ids, targets = trainer._batch(rows, np.random.RandomState(0))
    np.testing.assert_array_equal(ids.numpy(), rows)  # GPT inputs are not masked
    loss, acc = trainer._loss(ids, targets, False)

    logp = _log_softmax(trainer.transformer.model(ids, training=False).numpy())
    # position t predicts token t+1; a [PAD] target is no prediction
    pairs = [(b, t) for b in range(rows.shape[0]) for t in range(rows.shape[1] - 1) if rows[b, t + 1]]
    assert len(pairs) == rows.size - rows.shape[0] - 4 - 7
    expected = -np.mean([logp[b, t, rows[b, t + 1]] for b, t in pairs])
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    unshifted = -np.mean([logp[b, t, rows[b, t]] for b, t in pairs])
    assert abs(unshifted - expected) > 1e-3  # the check can tell the two apart
    right = np.mean([logp[b, t].argmax() == rows[b, t + 1] for b, t in pairs])
    assert float(acc) == pytest.approx(right, abs=1e-6)
    # causal: position t never sees token t+1, so it cannot copy its target
    changed = rows.copy()
    changed[:, 8] = 104 + (changed[:, 8] - 103) % (trainer.vocab_size - 104)
    logp2 = _log_softmax(trainer.transformer.model(tf.constant(changed), training=False).numpy())
    np.testing.assert_allclose(logp2[:, :8], logp[:, :8], atol=1e-5)
    assert np.abs(logp2[:, 8:] - logp[:, 8:]).max() > 1e-4


# --- schedule -----------------------------------------------------------------------------------

def test_learning_rate_warms_up_then_decays_linearly_to_ten_percent():
    peak, warmup, total = 2e-3, 10, 110
    schedule = WarmupLinearDecay(peak, warmup, total)
    steps = np.arange(0, 200)
    got = np.array([float(schedule(s)) for s in steps])
    expected = np.where(steps < warmup, peak * steps / warmup,
                        peak * np.maximum(0.1, 1 - 0.9 * (steps - warmup) / (total - warmup)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-10)
    assert got[0] == 0 and got.max() == pytest.approx(peak) and got.argmax() == warmup
    assert got[60] == pytest.approx(0.55 * peak)  # half way down
    assert got[total] == pytest.approx(0.1 * peak) and got[-1] == pytest.approx(0.1 * peak)
    # piecewise linear: constant slope within warm-up and within decay
    assert np.allclose(np.diff(got[:warmup + 1]), peak / warmup)
    assert np.allclose(np.diff(got[warmup:total + 1]), -0.9 * peak / (total - warmup))
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == schedule.get_config()


# --- the training loop: data order, resume, export ----------------------------------------------

def test_rows_for_is_a_seeded_permutation_per_epoch(straight):
    trainer, _ = straight
    n, bs = len(trainer.train_rows), trainer.config.batch_size
    per_epoch = n // bs
    assert per_epoch >= 4
    epoch0 = np.concatenate([trainer._rows_for(s) for s in range(per_epoch)])
    assert epoch0.shape == (per_epoch * bs, trainer.config.seq_len)
    # every row at most once in an epoch (as a multiset of the packed rows)
    pool = [tuple(r) for r in trainer.train_rows.tolist()]
    for row in set(tuple(r) for r in epoch0.tolist()):
        assert pool.count(row) >= sum(1 for r in epoch0.tolist() if tuple(r) == row)
    np.testing.assert_array_equal(trainer._rows_for(3), trainer._rows_for(3))
    np.testing.assert_array_equal(trainer._rows_for(per_epoch), trainer._rows_for(per_epoch))
    assert not np.array_equal(trainer._rows_for(0), trainer._rows_for(per_epoch))  # new epoch, new order


def test_resume_continues_exactly_like_an_uninterrupted_run(corpus_files, straight, tmp_path):
    corpus, vocab = corpus_files
    trainer4, seen4 = straight
    work = str(tmp_path / 'a')
    keras.utils.set_random_seed(0)
    first = Pretrainer(tiny(), vocab, corpus, work)
    seen = _record(first)
    first.train(max_steps=2, **QUIET)
    assert int(first.step.numpy()) == 2 and os.path.exists(os.path.join(work, 'ckpt', 'checkpoint'))

    keras.utils.set_random_seed(1)  # a different init: the restored weights must win
    resumed = Pretrainer(tiny(), vocab, corpus, work)
    assert int(resumed.step.numpy()) == 2 and int(resumed.optimizer.iterations.numpy()) == 2
    for a, b in zip(_weights(first), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    seen_after = _record(resumed)
    resumed.train(max_steps=2, **QUIET)
    seen += seen_after
    assert int(resumed.step.numpy()) == 4 and int(resumed.optimizer.iterations.numpy()) == 4

    # the same four batches (rows and masking) as the uninterrupted run, in the same order
    assert [s[0] for s in seen] == [s[0] for s in seen4] == [0, 1, 2, 3]
    for got, want in zip(seen, seen4):
        for a, b in zip(got[1:], want[1:]):
            np.testing.assert_array_equal(a, b)
    # and the same weights (the first two steps moved them, so this is not trivially true)
    assert max(np.abs(a - b).max() for a, b in zip(_weights(first), _weights(resumed))) > 1e-4
    for a, b in zip(_weights(trainer4), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)  # a step moves weights by ~1e-3
    logged = [json.loads(line) for line in open(os.path.join(work, 'log.jsonl'))]
    assert [m['step'] for m in logged] == [2, 4] and all(np.isfinite(m['heldout_loss']) for m in logged)


def test_a_corpus_smaller_than_one_batch_is_a_clear_error(corpus_files, tmp_path):
    _, vocab = corpus_files
    corpus = tmp_path / 'small.txt'
    corpus.write_text('今天天气很好。\n价格也便宜。\n', encoding='utf-8')
    with pytest.raises(DataError, match='fewer than one batch'):
        Pretrainer(tiny(), vocab, str(corpus), str(tmp_path / 'w'))


def _model_outputs(model, kind, ids):
    ids = tf.constant(ids)
    return model(ids if kind == 'gpt' else [ids, tf.zeros_like(ids)], training=False).numpy()


@pytest.mark.parametrize('kind', ['bert', 'gpt'])
def test_exported_model_loads_through_the_builders(kind, straight, gpt, corpus_files, tmp_path):
    trainer = straight[0] if kind == 'bert' else gpt[0]
    steps = 4 if kind == 'bert' else 1
    ids = trainer._rows_for(1)
    expected = _model_outputs(trainer.transformer.model, kind, ids)

    out = str(tmp_path / 'model')
    trainer.export(out, dtype=None, notes='tiny test model')
    assert sorted(os.listdir(out)) == ['PRETRAIN.json', 'bert_model.ckpt.data-00000-of-00001',
                                       'bert_model.ckpt.index', 'checkpoint', 'config.json', 'log.jsonl',
                                       'vocab.txt']
    assert json.load(open(os.path.join(out, 'config.json'))) == trainer.model_config
    assert open(os.path.join(out, 'vocab.txt'), 'rb').read() == open(corpus_files[1], 'rb').read()
    meta = json.load(open(os.path.join(out, 'PRETRAIN.json')))
    assert (meta['step'], meta['kind'], meta['seq_len']) == (steps, get_kind(kind).name, 16)
    assert meta['notes'] == 'tiny test model'

    transformer = make_method('finetune').build(BackboneSpec.from_dir(out), kind, None, None)
    np.testing.assert_allclose(_model_outputs(transformer.model, kind, ids), expected, atol=1e-6, rtol=0)
    clf = PromptClassifier.build(model_dir=out, kind=kind, maxlen=16)
    np.testing.assert_allclose(_model_outputs(clf.model, kind, ids), expected, atol=1e-6, rtol=0)

    # the default float16 export: the weights are exactly the float16-rounded ones
    out16 = str(tmp_path / 'model16')
    trainer.export(out16)
    prefix = os.path.join(out16, 'bert_model.ckpt')
    assert set(tf.train.load_checkpoint(prefix).get_variable_to_dtype_map().values()) == {tf.float16}
    transformer16 = make_method('finetune').build(BackboneSpec.from_dir(out16), kind, None, None)
    rounded = transformer_variables(trainer.transformer, 'float16')
    loaded = transformer_variables(transformer16)
    assert set(rounded) == set(loaded)
    for name, value in rounded.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], value.astype('float32'), err_msg=name)
    got = _model_outputs(transformer16.model, kind, ids)
    # float16 keeps ~3 significant digits; logits here are O(1)
    np.testing.assert_allclose(got, expected, atol=2e-2, rtol=0)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.95

    if kind == 'gpt':  # the evaluation at step 1 also exported a snapshot
        snapshot = str(gpt[1] / 'snapshots' / 'step_1')
        assert json.load(open(os.path.join(snapshot, 'PRETRAIN.json')))['step'] == 1
        BackboneSpec.from_dir(snapshot)


def test_cli_pretrain_smoke(corpus_files, tmp_path, capsys):
    from ptuning_tf.cli import main
    corpus, vocab = corpus_files
    args = ['pretrain', '--kind', 'bert', '--work-dir', str(tmp_path / 'w'), '--out', str(tmp_path / 'o'),
            '--hidden-size', '32', '--layers', '1', '--heads', '2', '--intermediate-size', '64',
            '--seq-len', '16', '--batch-size', '4', '--max-steps', '2', '--corpus', corpus, '--vocab', vocab]
    assert main(args) == 0
    assert sorted(os.listdir(str(tmp_path / 'o'))) == [
        'PRETRAIN.json', 'bert_model.ckpt.data-00000-of-00001', 'bert_model.ckpt.index', 'checkpoint',
        'config.json', 'log.jsonl', 'vocab.txt']
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['step'] == 2
    config = json.load(open(str(tmp_path / 'o' / 'config.json')))
    assert (config['hidden_size'], config['num_hidden_layers'], config['num_attention_heads']) == (32, 1, 2)
    assert main(args) == 0  # runs again: resumes at step 2
    assert json.load(open(str(tmp_path / 'o' / 'PRETRAIN.json')))['step'] == 4
    assert 'resuming at step 2' in capsys.readouterr().out

    small = tmp_path / 'small.txt'
    small.write_text('太短了。\n', encoding='utf-8')
    bad = args[:args.index('--corpus')] + ['--corpus', str(small), '--vocab', vocab]
    bad[bad.index('--work-dir') + 1] = str(tmp_path / 'w2')
    assert main(bad) == 2
    assert 'fewer than one batch' in capsys.readouterr().err


def test_own_corpus_without_vocab_builds_the_vocab_from_that_corpus(corpus_files, tmp_path, monkeypatch, capsys):
    from ptuning_tf import corpus as corpus_module
    from ptuning_tf.cli import main

    def no_project_corpus(*args, **kwargs):
        raise AssertionError('the project corpus must not be built when --corpus is given')
    monkeypatch.setattr(corpus_module, 'build_corpus', no_project_corpus)
    corpus, _ = corpus_files
    work = tmp_path / 'w'
    assert main(['pretrain', '--work-dir', str(work), '--out', str(tmp_path / 'o'), '--hidden-size', '32',
                 '--layers', '1', '--heads', '2', '--intermediate-size', '64', '--seq-len', '16',
                 '--batch-size', '4', '--max-steps', '1', '--corpus', corpus]) == 0
    assert sorted(p for p in os.listdir(str(work)) if not p.startswith('packed_')) == \
        ['ckpt', 'config.json', 'log.jsonl', 'vocab.txt']  # no corpus.txt / corpus_stats.json
    built = open(str(work / 'vocab.txt'), encoding='utf-8').read().split()
    assert built == build_vocab(CORPUS) == open(str(tmp_path / 'o' / 'vocab.txt'), encoding='utf-8').read().split()
    assert '公' in built and '的' in built  # characters of this corpus (each seen 8 times)

    assert main(['pretrain', '--work-dir', str(tmp_path / 'w2'), '--out', str(tmp_path / 'o2'),
                 '--corpus', str(tmp_path / 'missing.txt')]) == 2
    assert 'corpus file not found: %s' % (tmp_path / 'missing.txt') in capsys.readouterr().err


def test_packed_cache_is_keyed_by_corpus_and_vocab(corpus_files, tmp_path):
    corpus, vocab = corpus_files
    work = str(tmp_path / 'w')
    keras.utils.set_random_seed(0)
    first = Pretrainer(tiny(), vocab, corpus, work)
    [cache] = [p for p in os.listdir(work) if p.startswith('packed_')]
    assert cache.startswith('packed_16_') and cache.endswith('.npz')

    # a different corpus in the same work dir is packed afresh, never read from the old cache
    other = tmp_path / 'other.txt'
    other.write_text('\n'.join(t[::-1] for t in CORPUS) + '\n', encoding='utf-8')
    second = Pretrainer(tiny(), vocab, str(other), work)
    assert not np.array_equal(first.train_rows, second.train_rows)
    from ptuning_tf.pretrain import pack_corpus, packed_cache_path
    train, heldout = pack_corpus(str(other), Tokenizer(vocab, do_lower_case=True), tiny())
    np.testing.assert_array_equal(second.train_rows, train)
    np.testing.assert_array_equal(second.heldout_rows, heldout)
    # each key names its own file; the same inputs find the same file again
    config = tiny()
    key = packed_cache_path(work, config, corpus, vocab)
    assert os.path.basename(key) == cache
    assert packed_cache_path(work, config, str(other), vocab) != key
    smaller_vocab = tmp_path / 'vocab.txt'
    write_vocab(build_vocab(CORPUS[:3], min_count=1), str(smaller_vocab))
    assert packed_cache_path(work, config, corpus, str(smaller_vocab)) != key
    assert packed_cache_path(work, tiny(seed=1), corpus, vocab) != key  # another held-out draw
    assert len([p for p in os.listdir(work) if p.startswith('packed_16_')]) == 2


def test_cli_pretrain_mask_rate_reaches_the_config_and_is_checked(corpus_files, tmp_path, capsys):
    from ptuning_tf.cli import main
    corpus, vocab = corpus_files
    args = ['pretrain', '--work-dir', str(tmp_path / 'w'), '--out', str(tmp_path / 'o'),
            '--hidden-size', '32', '--layers', '1', '--heads', '2', '--intermediate-size', '64',
            '--seq-len', '16', '--batch-size', '4', '--max-steps', '1', '--corpus', corpus,
            '--vocab', vocab]
    assert main(args + ['--mask-rate', '1.5']) == 2
    assert 'argument --mask-rate: must be in (0, 1), got 1.5' in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'o'))
    assert main(args + ['--mask-rate', '0.4']) == 0
    assert json.load(open(str(tmp_path / 'o' / 'PRETRAIN.json')))['mask_rate'] == 0.4


def test_sinusoid_position_init_gives_ordered_positions_and_random_does_not(corpus_files, tmp_path):
    from ptuning_tf.pretrain import sinusoid_positions
    corpus, vocab = corpus_files
    tables = {}
    for init in ('random', 'sinusoid'):
        trainer = Pretrainer(tiny(position_init=init), vocab, corpus, str(tmp_path / init))
        tables[init] = trainer.transformer.model.get_layer('Embedding-Position').get_weights()[0]
    expected = sinusoid_positions(*tables['sinusoid'].shape, 0.02)
    np.testing.assert_allclose(tables['sinusoid'], expected, rtol=1e-6)
    assert abs(expected.std() - 0.02) < 1e-6

    def neighbour_cosine(t):
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
        return float(np.mean(np.sum(t[:-1] * t[1:], axis=1)))
    # neighbouring positions look alike only in the sinusoid table: that is its point
    assert neighbour_cosine(tables['sinusoid']) > 0.5 > abs(neighbour_cosine(tables['random']))


@pytest.mark.parametrize('bad', [dict(position_init='learned'), dict(mask_rate=0.0), dict(mask_rate=1.0)])
def test_pretrain_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        tiny(**bad)


def test_bert_pretraining_can_start_from_a_gpt_of_the_same_size(corpus_files, tmp_path):
    import tensorflow as tf
    from ptuning_tf.checkpoint import CheckpointError
    from ptuning_tf.models import SEGMENT_EMBEDDINGS, _checkpoint_pairs
    corpus, vocab = corpus_files
    gpt = Pretrainer(tiny('gpt'), vocab, corpus, str(tmp_path / 'gpt'))
    gpt.train(max_steps=2, **QUIET)
    gpt.export(str(tmp_path / 'gpt_out'), dtype=None)
    bert = Pretrainer(tiny('bert'), vocab, corpus, str(tmp_path / 'bert'), init_from=str(tmp_path / 'gpt_out'))
    reader = tf.train.load_checkpoint(str(tmp_path / 'gpt_out' / 'bert_model.ckpt'))
    pairs = _checkpoint_pairs(bert.transformer)
    assert SEGMENT_EMBEDDINGS in dict((n, w) for w, n in pairs)
    for weight, name in pairs:
        expected = np.zeros(weight.shape) if name == SEGMENT_EMBEDDINGS else reader.get_tensor(name)
        np.testing.assert_array_equal(weight.numpy(), expected, err_msg=name)
    assert np.isfinite(bert.train(max_steps=1, **QUIET)['loss'])

    small = tiny('bert', hidden_size=16, num_attention_heads=2, intermediate_size=32)
    with pytest.raises(CheckpointError, match='does not fit this BERT'):
        Pretrainer(small, vocab, corpus, str(tmp_path / 'bad'), init_from=str(tmp_path / 'gpt_out'))
