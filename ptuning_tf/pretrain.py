"""Pretraining small Chinese masked LMs and causal LMs (any family, RoFormer by default) on CPU.

The output is a bert4keras/Google-format directory (config.json naming the family,
bert_model.ckpt, vocab.txt, PRETRAIN.json and the whole log), so the shipped mini
models load through the same builders as real ones and as plain bert4keras models.
Runs are budgeted in steps or seconds, checkpoint periodically and resume: within a
work directory exactly, and across sessions from an exported model (`resume_from`).
The objective is the template kind's (kinds.py): the same masking as the classifier.
"""
import io
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras
from bert4keras.tokenizers import Tokenizer

from .checkpoint import atomic_write_bytes, atomic_write_text, check_vocab, save_model_dir
from .corpus import (SPECIAL_TOKENS, build_vocab, pack_corpus, pack_sequences,  # noqa: F401
                     packed_cache_path, prepare_corpus, write_vocab)
from .data import DataError
from .families import get_family, sinusoid_positions  # noqa: F401  (public here too)
from .kinds import get_kind
from .models import build_transformer, is_gpt_checkpoint, load_gpt_into_bert, split_head
from .progress import progress_bar
from .schedule import WarmupLinearDecay  # noqa: F401  (public here too)

@dataclass
class PretrainConfig:
    """Size, schedule and budget of one pretraining run."""
    kind: str = 'mlm'  # the objective (template kind): 'mlm' masked LM, 'lm' causal LM
    model: str = 'bert'  # the backbone family (families.py): 'bert', 'roformer'
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    seq_len: int = 128
    batch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 1000
    total_steps: int = 40000
    weight_decay: float = 0.01
    mask_rate: float = 0.15
    dropout: float = 0.0
    seed: int = 0
    heldout_fraction: float = 0.005
    position_init: str = 'random'  # or 'sinusoid': see sinusoid_positions
    decay_steps: Optional[int] = None  # None: decay from warm-up on; else constant, then the
    #   last decay_steps before total_steps decay (warm-up/stable/decay: the run can be
    #   extended across sessions and decayed when it is to be shipped)
    rewarm_steps: int = 200  # resuming from an exported model restarts Adam: warm up again

    def __post_init__(self):
        self.kind = get_kind(self.kind).name  # 'bert'/'gpt' (older runs) name the same kinds
        if self.position_init not in ('random', 'sinusoid'):
            raise ValueError("position_init must be 'random' or 'sinusoid', got %r" % self.position_init)
        if not 0 < self.mask_rate < 1:
            raise ValueError('mask_rate must be in (0, 1), got %g' % self.mask_rate)
        get_family(self.model)  # an unknown family fails here, by name
        if self.position_init != 'random' and not get_family(self.model).absolute_positions:
            raise ValueError('position_init is for learned position tables; %s has none' % self.model)
        if self.decay_steps is not None and not 0 < self.decay_steps <= self.total_steps:
            raise ValueError('decay_steps must be in (0, total_steps], got %r' % self.decay_steps)

    def model_config(self, vocab_size: int) -> dict:
        """config.json in Google's BERT layout."""
        return {
            'model': self.model, 'vocab_size': vocab_size, 'hidden_size': self.hidden_size,
            'num_hidden_layers': self.num_hidden_layers,
            'num_attention_heads': self.num_attention_heads,
            'intermediate_size': self.intermediate_size, 'hidden_act': 'gelu',
            'hidden_dropout_prob': 0.1, 'attention_probs_dropout_prob': 0.1,
            'max_position_embeddings': max(512, self.seq_len), 'type_vocab_size': 2,
            'initializer_range': 0.02,
        }


def shuffled_context(inputs: np.ndarray, chosen: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """`inputs` with each row's unmasked tokens (all but [CLS] and the `chosen`) permuted."""
    out = inputs.copy()
    for r in range(len(out)):
        keep = np.nonzero(~chosen[r] & (np.arange(out.shape[1]) > 0))[0]
        out[r, keep] = out[r, rng.permutation(keep)]
    return out


class Pretrainer:
    """Holds the model, optimizer and data of one run; `train` resumes where it stopped."""

    def __init__(self, config: PretrainConfig, vocab_path: str, corpus_path: str, work_dir: str,
                 init_from: Optional[str] = None, resume_from: Optional[str] = None):
        self.config, self.work_dir = config, work_dir
        self.vocab_path = vocab_path
        check_vocab(vocab_path)  # a vocab without [UNK] etc. fails here, by name
        self.tokenizer = Tokenizer(vocab_path, do_lower_case=True)
        self.vocab_size = self.tokenizer._vocab_size
        self.model_config = config.model_config(self.vocab_size)
        self._load_data(corpus_path)
        if len(self.train_rows) < config.batch_size:  # else _rows_for divides by zero
            raise DataError('corpus %s gives %d training rows of %d tokens, fewer than one batch '
                            '(%d): use more text, a smaller --seq-len or --batch-size'
                            % (corpus_path, len(self.train_rows), config.seq_len, config.batch_size))
        restart = self._resume_point(resume_from)
        if restart:
            init_from = os.path.join(resume_from, 'bert_model.ckpt')
        self.kind = get_kind(config.kind)
        from_gpt = bool(init_from) and not self.kind.causal and is_gpt_checkpoint(init_from)
        self.transformer = build_transformer(self.model_config, None if from_gpt else init_from,
                                             config.kind, trainable_ids=None, dropout=config.dropout,
                                             family=config.model)
        if from_gpt:
            load_gpt_into_bert(self.transformer, init_from)
        if init_from is None and config.position_init == 'sinusoid':
            table = self.transformer.model.get_layer('Embedding-Position').embeddings
            table.assign(sinusoid_positions(*table.shape, self.model_config['initializer_range']))
        self._build_heads()
        self.optimizer = keras.optimizers.AdamW(
            WarmupLinearDecay(config.learning_rate, config.warmup_steps, config.total_steps,
                              config.decay_steps, restart, config.rewarm_steps),
            weight_decay=config.weight_decay, clipnorm=1.0)
        self.step = tf.Variable(restart, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(model=self.transformer.model, optimizer=self.optimizer,
                                        step=self.step)
        self.manager = tf.train.CheckpointManager(self.ckpt, os.path.join(work_dir, 'ckpt'), 2)
        if self.manager.latest_checkpoint:
            self.ckpt.restore(self.manager.latest_checkpoint)

    def _resume_point(self, resume_from: Optional[str]) -> int:
        """The step an exported model (its PRETRAIN.json) continues from; 0 without one.

        Recorded in WORK_DIR/resumed.json so that restarting within the work dir keeps
        the same schedule, and the model's log is carried over with a line saying
        that the optimizer state was restarted.
        """
        record = os.path.join(self.work_dir, 'resumed.json')
        recorded = None
        if os.path.exists(record):
            with open(record) as f:
                recorded = json.load(f)
        # a work dir holds one run: its checkpoint would silently replace another start
        held = tf.train.latest_checkpoint(os.path.join(self.work_dir, 'ckpt'))
        elsewhere = os.path.abspath(resume_from or '') != (recorded or {}).get('from')
        if resume_from and (recorded or held) and elsewhere:
            start = 'resumed from %s' % recorded['from'] if recorded else 'started from scratch'
            raise DataError('work dir %s already holds a run (%s); give a fresh --work-dir to '
                            'resume from %s' % (self.work_dir, start, resume_from))
        if recorded:
            return int(recorded['step'])
        if not resume_from:
            return 0
        try:
            with open(os.path.join(resume_from, 'PRETRAIN.json')) as f:
                exported = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError('cannot resume from %s: no readable PRETRAIN.json (%s)'
                            % (resume_from, e)) from e
        exported['kind'] = get_kind(exported.get('kind', 'mlm')).name
        for key in ('kind', 'model', 'hidden_size', 'num_hidden_layers', 'seq_len', 'seed'):
            if exported.get(key, 'bert' if key == 'model' else None) != getattr(self.config, key):
                raise DataError('cannot resume from %s: it was pretrained with %s=%r, this run has %r'
                                % (resume_from, key, exported.get(key), getattr(self.config, key)))
        step = int(exported['step'])
        lines = []
        old_log = os.path.join(resume_from, 'log.jsonl')
        if os.path.exists(old_log):
            with open(old_log) as f:
                lines = [line for line in f if line.strip()]
        lines.append(json.dumps({'event': 'resume', 'step': step, 'from': os.path.abspath(resume_from),
                                 'weights': 'float16 export', 'optimizer': 'restarted',
                                 'rewarm_steps': self.config.rewarm_steps}) + '\n')
        atomic_write_text(os.path.join(self.work_dir, 'log.jsonl'), ''.join(lines))
        atomic_write_text(record, json.dumps({'step': step, 'from': os.path.abspath(resume_from)}))
        return step

    def _load_data(self, corpus_path: str) -> None:
        cache = packed_cache_path(self.work_dir, self.config, corpus_path, self.vocab_path)
        if os.path.exists(cache):
            data = np.load(cache)
            self.train_rows, self.heldout_rows = data['train'], data['heldout']
            return
        self.train_rows, self.heldout_rows = pack_corpus(corpus_path, self.tokenizer, self.config)
        buffer = io.BytesIO()
        np.savez(buffer, train=self.train_rows, heldout=self.heldout_rows)
        atomic_write_bytes(cache, buffer.getvalue())  # an interrupted write leaves no bad cache

    def _build_heads(self) -> None:
        self.encoder, self.project = split_head(self.transformer)

    def _loss(self, ids, targets, training):
        """Mean cross-entropy and accuracy over the targeted positions (kinds.py's targets)."""
        hidden = self.encoder(self.kind.inputs(ids), training=training)
        where = tf.not_equal(targets, 0)
        logits = self.project(tf.boolean_mask(hidden, where))
        labels = tf.boolean_mask(targets, where)
        losses = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        total = tf.maximum(tf.cast(tf.size(labels), tf.float32), 1.0)  # nothing targeted: 0, not NaN
        return tf.reduce_sum(losses) / total, tf.reduce_sum(correct) / total

    # a fixed signature: the number of targets changes every step (no retracing)
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, None], tf.int32)])
    def _train_step(self, ids, targets):
        variables = self.transformer.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, acc = self._loss(ids, targets, True)
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        return loss, acc

    def _batch(self, rows, rng):
        inputs, targets = self.kind.pretraining_example(rows, rng, self.tokenizer, self.config.mask_rate)
        return tf.constant(inputs, tf.int32), tf.constant(targets, tf.int32)

    def evaluate(self, max_rows: int = 2048, shuffle_context: bool = False) -> Dict[str, float]:
        """Held-out MLM accuracy or LM perplexity, with a fixed masking seed.

        `shuffle_context` (masked LM only) permutes the unmasked tokens of each row first:
        a model that uses word order loses accuracy, a bag-of-words model does not.
        """
        if shuffle_context and self.kind.causal:
            raise ValueError('shuffle_context is a masked-LM probe')
        rng = np.random.RandomState(12345)
        rows = self.heldout_rows[:max_rows]
        if not len(rows):  # a corpus too small to hold anything out
            return {}
        losses, accs = [], []
        for i in range(0, len(rows), self.config.batch_size):
            ids, targets = self._batch(rows[i:i + self.config.batch_size], rng)
            if shuffle_context:
                ids = tf.constant(shuffled_context(ids.numpy(), targets.numpy() != 0, rng))
            loss, acc = self._loss(ids, targets, False)
            losses.append(float(loss))
            accs.append(float(acc))
        loss, acc = float(np.mean(losses)), float(np.mean(accs))
        if not self.kind.causal:
            return {'heldout_loss': loss, 'heldout_mlm_acc': acc}
        return {'heldout_loss': loss, 'heldout_ppl': float(np.exp(loss)), 'heldout_lm_acc': acc}

    def _rows_for(self, step: int) -> np.ndarray:
        """The batch of a step: a seeded permutation per epoch, so resume is exact."""
        n, bs = len(self.train_rows), self.config.batch_size
        per_epoch = n // bs
        epoch, index = divmod(step, per_epoch)
        order = np.random.RandomState(self.config.seed + epoch).permutation(n)
        return self.train_rows[order[index * bs:(index + 1) * bs]]

    def save(self) -> None:
        self.manager.save(checkpoint_number=int(self.step.numpy()))

    def train(self, max_seconds: Optional[float] = None, max_steps: Optional[int] = None,
              save_every: float = 600, eval_every: int = 500, snapshot_dir: Optional[str] = None,
              log=print) -> Dict[str, float]:
        """Train until total_steps, `max_steps` more steps or `max_seconds`; always saves.

        With `snapshot_dir`, every evaluation also exports the model to
        `snapshot_dir/step_N`: the points of a learning curve.
        """
        start_step = int(self.step.numpy())
        end = self.config.total_steps if max_steps is None else min(
            self.config.total_steps, start_step + max_steps)
        stop = {'flag': False}
        previous = signal.signal(signal.SIGTERM, lambda *a: stop.update(flag=True))
        t0 = last_save = time.time()
        tokens, metrics = 0, {}
        bar = progress_bar(total=end - start_step, desc='pretrain %s' % self.config.kind)
        log_path = os.path.join(self.work_dir, 'log.jsonl')
        try:
            for step in range(start_step, end):
                rng = np.random.RandomState([self.config.seed, step])
                rows = self._rows_for(step)
                loss, acc = self._train_step(*self._batch(rows, rng))
                tokens += int((rows > 0).sum())
                bar.update(1)
                bar.set_postfix(loss='%.3f' % float(loss), acc='%.3f' % float(acc),
                                tok_s='%.0f' % (tokens / (time.time() - t0)))
                done = step + 1
                if done % eval_every == 0 or done == end:
                    metrics = dict(step=done, loss=float(loss), acc=float(acc),
                                   tokens_per_second=tokens / (time.time() - t0),
                                   tokens_seen=done * self.config.batch_size * self.config.seq_len,
                                   **self.evaluate())
                    with open(log_path, 'a') as f:
                        f.write(json.dumps(metrics) + '\n')
                    log(json.dumps(metrics))
                    if snapshot_dir:
                        self.export(os.path.join(snapshot_dir, 'step_%d' % done))
                if time.time() - last_save > save_every:
                    self.save()
                    last_save = time.time()
                if stop['flag'] or (max_seconds and time.time() - t0 > max_seconds):
                    break
        finally:
            bar.close()
            self.save()
            signal.signal(signal.SIGTERM, previous)
        return metrics

    def export(self, out_dir: str, dtype: Optional[str] = 'float16', notes: str = '') -> None:
        """Write the model as config.json + bert_model.ckpt + vocab.txt."""
        step = int(self.step.numpy())
        extra = {'PRETRAIN.json': json.dumps(dict(
            asdict(self.config), step=step, tokens_seen=step * self.config.batch_size * self.config.seq_len,
            notes=notes), indent=2)}
        log_path = os.path.join(self.work_dir, 'log.jsonl')
        if os.path.exists(log_path):  # the whole curve travels with the model
            with open(log_path) as f:
                extra['log.jsonl'] = f.read()
        save_model_dir(self.transformer, out_dir, self.model_config, self.vocab_path, dtype, extra)


def run_pretraining(config: PretrainConfig, work_dir: str, out_dir: str,
                    max_seconds: Optional[float] = None, max_steps: Optional[int] = None,
                    init_from: Optional[str] = None, vocab_path: Optional[str] = None,
                    corpus_path: Optional[str] = None, eval_every: int = 500,
                    snapshot_dir: Optional[str] = None, resume_from: Optional[str] = None,
                    log=print) -> Dict[str, float]:
    """Prepare data, train (resuming if `work_dir` has a checkpoint) and export to `out_dir`.

    `resume_from`, an exported model directory, continues its run at its step (the
    weights as exported, a fresh optimizer with `rewarm_steps` of warm-up) on its vocab.
    """
    if resume_from and vocab_path is None:
        vocab_path = os.path.join(resume_from, 'vocab.txt')
    corpus_path, vocab_path = prepare_corpus(work_dir, log=log, corpus_path=corpus_path,
                                             vocab_path=vocab_path)
    os.makedirs(work_dir, exist_ok=True)
    atomic_write_text(os.path.join(work_dir, 'config.json'), json.dumps(asdict(config), indent=2))
    trainer = Pretrainer(config, vocab_path, corpus_path, work_dir, init_from=init_from,
                         resume_from=resume_from)
    log('%s: %d train rows, %d held-out rows of %d tokens; resuming at step %d'
        % (config.kind, len(trainer.train_rows), len(trainer.heldout_rows), config.seq_len,
           int(trainer.step.numpy())))
    metrics = trainer.train(max_seconds=max_seconds, max_steps=max_steps, eval_every=eval_every,
                            snapshot_dir=snapshot_dir, log=log)
    trainer.export(out_dir)
    return metrics
