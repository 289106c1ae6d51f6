"""PromptClassifier: build, train with `model.fit`, evaluate and predict.

This is the one object most users touch. It owns a bert4keras model (`.model`, a
plain Keras model: compile it, fit it, add callbacks), a `Template`, and the
switches of the method (P-tuning or full fine-tuning, auxiliary loss, whole-word
masking). Saving and loading of the learned prompt live in `prompts.py`.
"""
import logging
import random
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from bert4keras.tokenizers import Tokenizer

from .data import Example
from .layers import PtuningEmbedding
from .losses import gathered_crossentropy, lm_example, mlm_example, word_tokenize
from .models import BackboneSpec, PtuningConfig, build_model, gathered_head_model, split_head
from .progress import progress_bar
from .templates import DEFAULT_LABEL_WORDS, Template, pad

logger = logging.getLogger('ptuning_tf')


def set_seed(seed: int) -> None:
    """Seed python, numpy and TensorFlow (initialisers, dropout, shuffling)."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


class PromptBatches(keras.utils.Sequence):
    """Training batches for `model.fit`; the random masking is redrawn every epoch.

    With `steps` set, an epoch is that many batches and the data is cycled through as
    often as needed, reshuffled on every pass (as bojone's `forfit()` does), so a
    `steps_per_epoch` longer than one pass never runs out of data.
    """
    GROUP_WINDOW = 4  # batches sorted together by length (group_by_length)

    def __init__(self, classifier: 'PromptClassifier', examples: Sequence[Example],
                 batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 steps: Optional[int] = None, group_by_length: bool = True):
        super().__init__()
        if not examples:
            raise ValueError('no training examples')
        if steps is not None and steps < 1:
            raise ValueError('steps per epoch must be >= 1, got %r' % steps)
        self.classifier, self.batch_size, self.shuffle, self.seed = classifier, batch_size, shuffle, seed
        self.examples, self.steps, self.epoch = list(examples), steps, 0
        self.group_by_length = group_by_length

    @property
    def batches_per_pass(self) -> int:
        return (len(self.examples) + self.batch_size - 1) // self.batch_size

    def __len__(self):
        return self.steps or self.batches_per_pass

    def on_epoch_end(self):
        self.epoch += 1

    def order(self, data_pass: int) -> np.ndarray:
        """A fresh permutation per pass; batches are then cut from it in order.

        Every window of GROUP_WINDOW batches is sorted by text length and its batches
        are shuffled, so a batch pads to texts of similar length while its members
        still change every pass.
        """
        if not self.shuffle:
            return np.arange(len(self.examples))
        rng = np.random.RandomState([self.seed, self.epoch, data_pass])
        order = rng.permutation(len(self.examples))
        if not self.group_by_length:
            return order
        # a pass that fits one window would be cut into the same batches every time
        per_window = self.GROUP_WINDOW if self.batches_per_pass > self.GROUP_WINDOW else \
            max(1, self.batches_per_pass // 2)
        window, size = per_window * self.batch_size, self.batch_size
        groups = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: len(self.examples[i][0]))
            groups += [chunk[b:b + size] for b in range(0, len(chunk), size)]
        full = [g for g in groups if len(g) == size]  # a short last batch stays last
        return np.concatenate([full[g] for g in rng.permutation(len(full))] + groups[len(full):])

    def __getitem__(self, index):
        data_pass, batch = divmod(index, self.batches_per_pass)
        picked = self.order(data_pass)[batch * self.batch_size:(batch + 1) * self.batch_size]
        rng = np.random.RandomState([self.seed, self.epoch, index])
        return self.make_batch([self.examples[i] for i in picked], rng)

    def make_batch(self, examples: Sequence[Example], rng: np.random.RandomState):
        inputs, targets = zip(*(self.classifier.training_pair(t, y, rng) for t, y in examples))
        return self.classifier.training_batch(pad(inputs), pad(targets))


class Evaluator(keras.callbacks.Callback):
    """Valid/test accuracy after each epoch; keeps the best-valid weights, stops early."""

    def __init__(self, classifier: 'PromptClassifier', valid: Sequence[Example],
                 test: Optional[Sequence[Example]] = None, patience: Optional[int] = None,
                 log=logger.info):
        super().__init__()
        self.classifier, self.valid, self.test = classifier, valid, test
        self.patience, self.log = patience, log
        self.best_valid, self.best_epoch, self.best_state, self.history = -1.0, -1, None, []

    def on_epoch_end(self, epoch, logs=None):
        valid_acc = self.classifier.evaluate(self.valid)
        test_acc = self.classifier.evaluate(self.test) if self.test else None
        record = {'epoch': epoch + 1, 'loss': (logs or {}).get('loss'), 'valid_acc': valid_acc,
                  'test_acc': test_acc}
        self.history.append(record)
        if logs is not None:
            logs['valid_acc'] = valid_acc
            if test_acc is not None:
                logs['test_acc'] = test_acc
        if valid_acc > self.best_valid:
            self.best_valid, self.best_epoch = valid_acc, epoch + 1
            self.best_state = self.classifier.trainable_state()
        self.log('epoch %d: valid_acc=%.4f%s (best %.4f at epoch %d)' % (
            epoch + 1, valid_acc, '' if test_acc is None else ' test_acc=%.4f' % test_acc,
            self.best_valid, self.best_epoch))
        if self.patience is not None and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_state is not None:
            self.classifier.set_trainable_state(self.best_state)

    @property
    def best(self) -> Dict[str, Optional[float]]:
        if self.best_epoch < 0:
            return {}
        return dict(self.history[self.best_epoch - 1])


JIT_LENGTH_STEP = 16  # predict(jit_compile=True) pads lengths to multiples of this


class PromptClassifier:
    """A prompted BERT/GPT that classifies texts through its label words."""

    def __init__(self, transformer, template: Template, config: PtuningConfig,
                 spec: Optional[BackboneSpec] = None, aux_loss: bool = True,
                 whole_word_mask: bool = False, mask_rate: float = 0.15):
        self.transformer, self.template, self.config, self.spec = transformer, template, config, spec
        self.model = transformer.model
        self.aux_loss, self.whole_word_mask, self.mask_rate = aux_loss, whole_word_mask, mask_rate
        self._encoder, self._project = split_head(transformer)
        self._label_ids = tf.constant(template.label_ids, tf.int32)
        self._scores = tf.function(self._slot_logits, reduce_retracing=True)
        self._jit_scores = tf.function(self._slot_logits, jit_compile=True)
        self._training_model = None

    @classmethod
    def build(cls, model_dir: Optional[str] = None, kind: str = 'bert', mode: str = 'ptuning',
              pattern: Optional[str] = None, label_words: Sequence[str] = DEFAULT_LABEL_WORDS,
              prompt_ids: Optional[Sequence[int]] = None, maxlen: int = 128,
              aux_loss: bool = True, whole_word_mask: bool = False,
              config_path: Optional[str] = None, checkpoint_path: Optional[str] = None,
              vocab_path: Optional[str] = None, dropout: Optional[float] = None,
              method: str = 'ptuning', prompt_length: Optional[int] = None,
              head: str = 'verbalizer', prompt_encoder: str = 'none',
              reparameterize: bool = False) -> 'PromptClassifier':
        """Everything from a model directory (or explicit files; default: the shipped mini model).

        `method='ptuning_v2'`: deep prompts of `prompt_length` (default 20) vectors per
        layer, optionally `reparameterize`d, with `head='verbalizer'` or `'linear'`
        (deep.py). `prompt_encoder='mlp'|'lstm'`: P-tuning v1 with the paper's encoder
        (encoders.py). Returns the matching subclass.
        """
        spec = BackboneSpec.resolve(model_dir, config_path, checkpoint_path, vocab_path, kind)
        tokenizer = Tokenizer(spec.vocab_path, do_lower_case=True)
        if method == 'ptuning_v2':
            from .deep import deep_template_args
            pattern, prompt_ids, prompt_length = deep_template_args(kind, pattern, prompt_ids,
                                                                    prompt_length)
        elif prompt_length is not None:
            raise ValueError("prompt_length is for method='ptuning_v2'; P-tuning v1 counts the "
                             '{p} of its pattern')
        config = PtuningConfig(kind=kind, mode=mode, dropout=dropout, method=method,
                               prompt_length=prompt_length or 20, head=head,
                               prompt_encoder=prompt_encoder, reparameterize=reparameterize)
        template = Template(tokenizer, kind, pattern, label_words, prompt_ids, maxlen)
        config.trainable_ids = template.prompt_ids or [1]
        _check_vocab_size(tokenizer, spec, maxlen)
        transformer, _ = build_model(spec, config)
        klass = cls
        if method == 'ptuning_v2':
            from .deep import DeepPromptClassifier as klass
        elif prompt_encoder != 'none':
            from .encoders import EncodedPromptClassifier as klass
        return klass(transformer, template, config, spec, aux_loss, whole_word_mask)

    # ---- encoding -------------------------------------------------------------------
    def model_inputs(self, token_ids: np.ndarray):
        if self.config.kind == 'gpt':
            return token_ids
        return (token_ids, np.zeros_like(token_ids))

    def training_batch(self, token_ids: np.ndarray, targets: np.ndarray):
        """((model inputs..., targets), targets): what `training_model` trains on."""
        inputs = self.model_inputs(token_ids)
        return (tuple(inputs) if isinstance(inputs, tuple) else (inputs,)) + (targets,), targets

    def training_pair(self, text: str, label: int, rng: np.random.RandomState) -> Tuple[List[int], List[int]]:
        """(inputs, targets) of one labelled example, with fresh random masking."""
        if not 0 <= label < self.template.num_labels:
            raise ValueError('label %r outside 0..%d' % (label, self.template.num_labels - 1))
        if self.config.kind == 'gpt':
            return lm_example(self.template, self.template.encode(text, label), self.aux_loss)
        word_ids = None
        if self.aux_loss and self.whole_word_mask:
            text, word_ids = word_tokenize(self.template, text)
        encoded = self.template.encode(text)
        return mlm_example(self.template, encoded, label, rng if self.aux_loss else None,
                           self.mask_rate, word_ids)

    def batches(self, examples: Sequence[Example], batch_size: int = 32, shuffle: bool = True,
                seed: int = 0, steps: Optional[int] = None) -> PromptBatches:
        return PromptBatches(self, examples, batch_size, shuffle, seed, steps)

    # ---- training -------------------------------------------------------------------
    @property
    def training_model(self) -> keras.Model:
        """What `fit` trains: `model` whose head runs only at targeted positions.

        Same weights, same loss value as `masked_crossentropy` on `model`'s output, but
        the vocabulary projection and softmax skip the untargeted positions (BERT's
        masking targets about 15% of them; models.gathered_head_model).
        """
        if self._training_model is None:
            self._training_model = gathered_head_model(self._encoder, self._project)
        return self._training_model

    def compile(self, learning_rate: float = 6e-4, jit_compile: bool = False) -> None:
        """Keras' Adam on the gathered cross-entropy (bert4keras' own Adam fails on TF 2.21)."""
        self.training_model.compile(loss=gathered_crossentropy, jit_compile=jit_compile,
                                    optimizer=keras.optimizers.Adam(learning_rate))

    def fit(self, train: Sequence[Example], valid: Optional[Sequence[Example]] = None,
            test: Optional[Sequence[Example]] = None, epochs: int = 20, batch_size: int = 32,
            learning_rate: Optional[float] = None, seed: int = 0, patience: Optional[int] = None,
            steps_per_epoch: Optional[int] = None, callbacks: Sequence = (), verbose: int = 1,
            log=logger.info) -> Dict:
        """Train with `model.fit`; with `valid`, keep the best-valid state.

        The evaluator runs first, so user callbacks (EarlyStopping, TensorBoard...) see
        `valid_acc`/`test_acc` in their logs. Returns the best epoch's record (epoch,
        valid_acc, test_acc) and the history.
        """
        set_seed(seed)
        if learning_rate is None:
            learning_rate = self.default_learning_rate()
        self.compile(learning_rate)
        batches = self.batches(train, batch_size, True, seed, steps_per_epoch)
        evaluator = Evaluator(self, valid, test, patience, log) if valid else None
        t0 = time.time()
        history = self.training_model.fit(batches, epochs=epochs,
                                          callbacks=([evaluator] if evaluator else []) + list(callbacks),
                                          verbose=verbose, shuffle=False)
        result = dict(evaluator.best) if evaluator else {'epoch': epochs}
        result.update(seconds=time.time() - t0, history=evaluator.history if evaluator
                      else [{'epoch': i + 1, 'loss': l} for i, l in enumerate(history.history['loss'])])
        return result

    def default_learning_rate(self) -> float:
        """The reference's Adam rates: 6e-4 for P-tuning, 1e-5 for fine-tuning."""
        return 6e-4 if self.config.mode == 'ptuning' else 1e-5

    # ---- state ----------------------------------------------------------------------
    @property
    def embedding(self) -> PtuningEmbedding:
        return self.transformer.layers['Embedding-Token']

    def prompt_rows(self) -> np.ndarray:
        return self.embedding.embeddings.numpy()[self.template.prompt_ids]

    def set_prompt_rows(self, rows: np.ndarray) -> None:
        matrix = self.embedding.embeddings
        ids = tf.constant(self.template.prompt_ids, tf.int32)[:, None]
        matrix.assign(tf.tensor_scatter_nd_update(matrix, ids, tf.constant(rows, matrix.dtype)))

    def trainable_state(self):
        """What training changes: the prompt rows, or every weight when fine-tuning."""
        if self.config.mode == 'ptuning':
            return self.prompt_rows()
        return self.model.get_weights()

    def set_trainable_state(self, state) -> None:
        if self.config.mode == 'ptuning':
            self.set_prompt_rows(state)
        else:
            self.model.set_weights(state)

    # ---- inference ------------------------------------------------------------------
    def read_position(self, encoded) -> int:
        """Where the scores are read: the label slot (a linear head may read elsewhere)."""
        return self.template.prediction_position(encoded)

    def _slot_logits(self, token_ids, positions):
        inputs = [token_ids] if self.config.kind == 'gpt' else [token_ids, tf.zeros_like(token_ids)]
        hidden = self._encoder(inputs, training=False)
        picked = tf.gather(hidden, positions, batch_dims=1)
        return tf.gather(self._project(picked), self._label_ids, axis=-1)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64,
                      progress: bool = False, jit_compile: bool = False) -> np.ndarray:
        """Label probabilities [n, num_labels] from the label words' logits.

        Texts are sorted by length and padded per batch, so short texts are cheap. With
        `jit_compile`, XLA runs the batches: lengths are padded up to a multiple of
        `JIT_LENGTH_STEP` and every batch to `batch_size`, because XLA compiles once per
        shape; only repeated calls over the same buckets repay that (speed section of
        BENCHMARKS.md).
        """
        if isinstance(texts, str):
            raise TypeError('predict_proba takes a list of texts, not one string')
        encoded = [self.template.encode(t) for t in texts]
        order = np.argsort([len(e.token_ids) for e in encoded], kind='stable')
        out = np.zeros((len(texts), self.template.num_labels), dtype='float32')
        scores = self._jit_scores if jit_compile else self._scores
        starts = range(0, len(order), batch_size)
        for start in progress_bar(starts, desc='predict', disable=None if progress else True):
            idx = order[start:start + batch_size]
            ids = pad([encoded[i].token_ids for i in idx])
            pos = np.array([self.read_position(encoded[i]) for i in idx], 'int32')
            if jit_compile:
                length = -(-ids.shape[1] // JIT_LENGTH_STEP) * JIT_LENGTH_STEP
                ids = np.pad(ids, ((0, batch_size - len(idx)), (0, length - ids.shape[1])))
                pos = np.pad(pos, (0, batch_size - len(idx)))
            logits = scores(tf.constant(ids), tf.constant(pos)).numpy()[:len(idx)]
            out[idx] = tf.nn.softmax(logits, -1).numpy()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64,
                jit_compile: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) for raw texts."""
        probs = self.predict_proba(texts, batch_size, jit_compile=jit_compile)
        return probs.argmax(-1), probs

    def evaluate(self, examples: Sequence[Example], batch_size: int = 64) -> float:
        """Accuracy on labelled examples."""
        if not examples:
            raise ValueError('no examples to evaluate')
        texts, labels = zip(*examples)
        return float(np.mean(self.predict(list(texts), batch_size)[0] == np.array(labels)))


def _check_vocab_size(tokenizer, spec: BackboneSpec, maxlen: int) -> None:
    from .checkpoint import CheckpointError, read_config
    config = read_config(spec.config_path)
    if tokenizer._vocab_size != config['vocab_size']:
        raise CheckpointError('vocab %s has %d tokens but config %s says vocab_size=%d'
                              % (spec.vocab_path, tokenizer._vocab_size, spec.config_path,
                                 config['vocab_size']))
    positions = config.get('max_position_embeddings', 512)
    if maxlen > positions:
        raise CheckpointError('maxlen %d exceeds the model\'s max_position_embeddings %d'
                              % (maxlen, positions))
