"""PromptClassifier: one backbone family, one template kind, one tuning method.

This is the one object most users touch. It owns a bert4keras model (`.model`, a
plain Keras model), a `Template`, a method (methods.py) and the head the method picked
(heads.py); it trains with `model.fit`, evaluates and predicts. Everything it was
built from is one serialisable `ClassifierConfig`; saving.py writes it beside the
learned state, so `saving.load` rebuilds the same classifier.
"""
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from bert4keras.tokenizers import Tokenizer

from .checkpoint import CheckpointError
from .data import Example
from .kinds import LossOptions, get_kind
from .methods import Method, PTuning, make_method, method_from_config
from .models import BackboneSpec, split_head
from .progress import progress_bar
from .templates import DEFAULT_LABEL_WORDS, Template, pad
from .training import Evaluator, PromptBatches, TrainingInterrupted, logger, set_seed


@dataclass
class ClassifierConfig:
    """Everything a classifier is, apart from its base model and what it learned."""
    kind: str = 'mlm'  # template kind: 'mlm' (masked LM) or 'lm' (causal LM)
    method: Method = field(default_factory=PTuning)
    pattern: Optional[str] = None  # None: the method's / kind's default
    label_words: Sequence[str] = DEFAULT_LABEL_WORDS
    prompt_ids: Optional[Sequence[int]] = None
    maxlen: int = 128
    loss: LossOptions = field(default_factory=LossOptions)
    dropout: Optional[float] = None  # None keeps the checkpoint's value

    def __post_init__(self):
        self.kind = get_kind(self.kind).name
        if self.loss.whole_word_mask and get_kind(self.kind).causal:
            raise ValueError('whole_word_mask is masked-LM masking; a causal LM predicts every token')
        if self.maxlen < 2:
            raise ValueError('maxlen must be at least 2, got %r' % self.maxlen)
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError('dropout must be in [0, 1), got %r' % self.dropout)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(method=self.method.to_config(), label_words=list(self.label_words),
                   prompt_ids=None if self.prompt_ids is None else [int(i) for i in self.prompt_ids])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> 'ClassifierConfig':
        data = dict(data)
        data['method'] = method_from_config(data['method'])
        data['loss'] = LossOptions(**data.get('loss', {}))
        return cls(**data)


class PromptClassifier:
    """A prompted masked or causal LM that classifies texts."""

    def __init__(self, transformer, template: Template, method: Method,
                 spec: Optional[BackboneSpec] = None, loss: Optional[LossOptions] = None,
                 dropout: Optional[float] = None):
        self.transformer, self.template, self.method, self.spec = transformer, template, method, spec
        self.kind = template.kind
        self.loss = loss or LossOptions()
        self.dropout = dropout
        self.encoder, self.project = split_head(transformer)
        self.head = method.make_head(self)
        self.model = self.head.inference_model(self)
        self._scores = tf.function(self._slot_logits, reduce_retracing=True)
        self._jit_scores = tf.function(self._slot_logits, jit_compile=True)
        method.attach(self)

    @classmethod
    def build(cls, model_dir: Optional[str] = None, kind='mlm', method='ptuning', *,
              pattern: Optional[str] = None, label_words: Sequence[str] = DEFAULT_LABEL_WORDS,
              prompt_ids: Optional[Sequence[int]] = None, maxlen: int = 128,
              aux_loss: bool = True, whole_word_mask: bool = False, mask_rate: float = 0.15,
              dropout: Optional[float] = None, config_path: Optional[str] = None,
              checkpoint_path: Optional[str] = None, vocab_path: Optional[str] = None,
              family: Optional[str] = None, **method_options) -> 'PromptClassifier':
        """A classifier on a model directory (or explicit files; default: the shipped mini model).

        `method` is a name ('ptuning', 'ptuning_v2', 'finetune') with its options as
        keywords (e.g. `prompt_encoder='lstm'`, `prompt_length=20, head='linear'`),
        or a `methods.Method` instance. `family` overrides the backbone family read from
        the model directory (e.g. 'albert_unshared' for an ALBERT checkpoint).
        """
        config = ClassifierConfig(kind, make_method(method, **method_options), pattern, label_words,
                                  prompt_ids, maxlen, LossOptions(aux_loss, whole_word_mask, mask_rate),
                                  dropout)
        spec = BackboneSpec.resolve(model_dir, config_path, checkpoint_path, vocab_path, config.kind,
                                    family)
        return cls.from_config(config, spec)

    @classmethod
    def from_config(cls, config: ClassifierConfig, spec: BackboneSpec) -> 'PromptClassifier':
        tokenizer = Tokenizer(spec.vocab_path, do_lower_case=True)
        pattern, prompt_ids = config.method.template_args(config.kind, config.pattern, config.prompt_ids)
        template = Template(tokenizer, config.kind, pattern, config.label_words, prompt_ids, config.maxlen)
        _check_vocab_size(tokenizer, spec, config.maxlen)
        transformer = config.method.build(spec, config.kind, template, config.dropout)
        return cls(transformer, template, config.method, spec, config.loss, config.dropout)

    @property
    def config(self) -> ClassifierConfig:
        """The resolved configuration (the template as built), ready to be saved."""
        t = self.template
        return ClassifierConfig(self.kind.name, self.method, t.pattern, t.label_words, t.prompt_ids,
                                t.maxlen, self.loss, self.dropout)

    # ---- the learned state ------------------------------------------------------------
    def state(self) -> Dict[str, np.ndarray]:
        """What the method learned, as the named arrays a save holds (encoders folded)."""
        return self.method.state(self)

    def set_state(self, arrays: Dict[str, np.ndarray]) -> None:
        self.method.set_state(self, arrays)

    def snapshot(self):
        """The trainable state as training has it (for keeping the best epoch)."""
        return self.method.snapshot(self)

    def restore(self, snapshot) -> None:
        self.method.restore(self, snapshot)

    @property
    def embedding(self):
        return self.transformer.layers['Embedding-Token']

    # ---- training ---------------------------------------------------------------------
    def batches(self, examples: Sequence[Example], batch_size: int = 32, shuffle: bool = True,
                seed: int = 0, steps: Optional[int] = None) -> PromptBatches:
        return PromptBatches(self, examples, batch_size, shuffle, seed, steps)

    @property
    def training_model(self) -> keras.Model:
        """What `fit` trains: for the verbalizer, `model` with the head run only at targets."""
        return self.head.training_model(self)

    def compile(self, learning_rate: Optional[float] = None, jit_compile: bool = False) -> None:
        """Keras' Adam on the head's loss (bert4keras' own Adam fails on TF 2.21)."""
        rate = self.method.learning_rate if learning_rate is None else learning_rate
        self.training_model.compile(loss=self.head.loss, jit_compile=jit_compile,
                                    optimizer=keras.optimizers.Adam(rate))

    def fit(self, train: Sequence[Example], valid: Optional[Sequence[Example]] = None,
            test: Optional[Sequence[Example]] = None, epochs: int = 20, batch_size: int = 32,
            learning_rate: Optional[float] = None, seed: int = 0, patience: Optional[int] = None,
            steps_per_epoch: Optional[int] = None, callbacks: Sequence = (), verbose: int = 1,
            log=logger.info) -> Dict:
        """Train with `model.fit`; with `valid`, keep the best-valid state.

        The evaluator runs first, so user callbacks (EarlyStopping, TensorBoard...) see
        `valid_acc`/`test_acc` in their logs. Returns the best epoch's record (epoch,
        valid_acc, test_acc) and the history. `learning_rate=None`: the method's default.
        Ctrl-C raises `TrainingInterrupted` with the best-valid state restored.
        """
        set_seed(seed)
        self.compile(learning_rate)
        batches = self.batches(train, batch_size, True, seed, steps_per_epoch)
        evaluator = Evaluator(self, valid, test, patience, log) if valid else None
        t0 = time.time()
        try:
            history = self.training_model.fit(
                batches, epochs=epochs, callbacks=([evaluator] if evaluator else []) + list(callbacks),
                verbose=verbose, shuffle=False)
        except KeyboardInterrupt:
            best = {}
            if evaluator is not None and evaluator.best_state is not None:
                evaluator.on_train_end()  # the best-valid state back in the model
                best = dict(evaluator.best, seconds=time.time() - t0, history=evaluator.history)
            raise TrainingInterrupted(best) from None
        result = dict(evaluator.best) if evaluator else {'epoch': epochs}
        result.update(seconds=time.time() - t0, history=evaluator.history if evaluator
                      else [{'epoch': i + 1, 'loss': l} for i, l in enumerate(history.history['loss'])])
        return result

    # ---- inference --------------------------------------------------------------------
    def _slot_logits(self, token_ids, positions):
        """Class scores [B, labels] from token ids [B, T] and read positions [B, W]."""
        hidden = self.encoder(self.kind.inputs(token_ids), training=False)
        return self.head.scores(self, tf.gather(hidden, positions, batch_dims=1))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64,
                      progress: bool = False, jit_compile: bool = False) -> np.ndarray:
        """Label probabilities [n, num_labels].

        Each text is scored through the head's views of it (one; a causal LM with label
        words longer than one token scores each class's continuation, one view per class).
        Views are sorted by length and padded per batch, so short texts are cheap. With
        `jit_compile`, XLA runs the batches: lengths are padded up to a multiple of
        `JIT_LENGTH_STEP` and every batch to `batch_size`, because XLA compiles once per
        shape; only repeated calls over the same buckets repay that (speed section of
        BENCHMARKS.md).
        """
        if isinstance(texts, str):
            raise TypeError('predict_proba takes a list of texts, not one string')
        if not len(texts):
            return np.zeros((0, self.template.num_labels), dtype='float32')
        views = [v for t in texts for v in self.head.views(self.template, t)]
        per_text = len(views) // max(1, len(texts))
        order = np.argsort([len(e.token_ids) for e in views], kind='stable')
        scores_of_views = np.zeros((len(views), self.template.num_labels), dtype='float32')
        scores = self._jit_scores if jit_compile else self._scores
        for start in progress_bar(range(0, len(order), batch_size), desc='predict',
                                  disable=None if progress else True):
            idx = order[start:start + batch_size]
            ids = pad([views[i].token_ids for i in idx])
            pos = np.array([self.head.read_positions(self.kind, views[i]) for i in idx], 'int32')
            if jit_compile:
                length = -(-ids.shape[1] // JIT_LENGTH_STEP) * JIT_LENGTH_STEP
                ids = np.pad(ids, ((0, batch_size - len(idx)), (0, length - ids.shape[1])))
                pos = np.pad(pos, ((0, batch_size - len(idx)), (0, 0)))
            scores_of_views[idx] = scores(tf.constant(ids), tf.constant(pos)).numpy()[:len(idx)]
        logits = self.head.combine(scores_of_views.reshape(len(texts), per_text, -1))
        return tf.nn.softmax(logits, -1).numpy()

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


JIT_LENGTH_STEP = 16  # predict(jit_compile=True) pads lengths to multiples of this


def _check_vocab_size(tokenizer, spec: BackboneSpec, maxlen: int) -> None:
    config = spec.config
    if tokenizer._vocab_size != config['vocab_size']:
        raise CheckpointError('vocab %s has %d tokens but config %s says vocab_size=%d'
                              % (spec.vocab_path, tokenizer._vocab_size, spec.config_path,
                                 config['vocab_size']))
    positions = config.get('max_position_embeddings', 512)
    if maxlen > positions and spec.family.absolute_positions:
        raise CheckpointError('maxlen %d exceeds the model\'s max_position_embeddings %d'
                              % (maxlen, positions))

