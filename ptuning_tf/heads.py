"""Classification heads: how a classifier turns hidden states into class scores, and trains.

- `Verbalizer`: the pretrained MLM/LM head read at the label slot, restricted to the
  label words (P-tuning, PET, fine-tuning with a template). Training targets come from
  the template kind, with its auxiliary loss; the vocabulary projection runs only at
  targeted positions (`gathered_head_model`).
- `LinearHead`: a Dense layer on one summary position ([CLS] for a masked LM, the last
  token for a causal LM), trained with plain cross-entropy (P-tuning v2's linear head).

A head knows its training model, its loss, its batches, where it reads and its own
saved arrays; the classifier asks it and never which head it holds.
"""
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from .layers import ReadPosition
from .losses import gathered_crossentropy
from .models import gathered_head_model
from .templates import pad


def _checked_labels(examples: Sequence, num_labels: int) -> None:
    for _, label in examples:
        if not 0 <= label < num_labels:
            raise ValueError('label %r outside 0..%d' % (label, num_labels - 1))


class Verbalizer:
    """Label words through the model's own MLM/LM head.

    One-token label words: the label words' logits at the slot (PET's and bojone's
    verbalizer). Longer ones: a class scores the mean log-probability of its tokens,
    read at the slot's [MASK]s (masked LM; a shorter word is scored on its own length)
    or, for a causal LM, as the continuation after the text, one forward pass per class.
    """
    name = 'verbalizer'

    def __init__(self, classifier):
        template = classifier.template
        self.width = template.slot_width
        self.per_label = classifier.kind.causal and self.width > 1  # the word is in the input
        self._model = None
        if self.width == 1:
            self.label_ids = tf.constant(template.label_ids, tf.int32)
            return
        tokens = np.zeros((template.num_labels, self.width), 'int32')
        weights = np.zeros((template.num_labels, self.width), 'float32')
        for j, word in enumerate(template.label_tokens):
            tokens[j, :len(word)], weights[j, :len(word)] = word, 1.0 / len(word)
        self.tokens, self.token_weights = tf.constant(tokens.T), tf.constant(weights)  # [W, L], [L, W]

    def inference_model(self, classifier) -> keras.Model:
        return classifier.transformer.model

    def training_model(self, classifier) -> keras.Model:
        if self._model is None:
            self._model = gathered_head_model(classifier.encoder, classifier.project)
        return self._model

    loss = staticmethod(gathered_crossentropy)

    def batch(self, classifier, examples: Sequence, rng: np.random.RandomState):
        """((model inputs..., targets), targets), with fresh random masking."""
        _checked_labels(examples, classifier.template.num_labels)
        pairs = [classifier.kind.training_example(classifier.template, text, label, rng,
                                                  classifier.loss)
                 for text, label in examples]
        inputs, targets = zip(*pairs)
        targets = pad(targets)
        return tuple(classifier.kind.inputs(pad(inputs))) + (targets,), targets

    def views(self, template, text) -> List:
        """The encodings a text is scored through: one, or one per class (causal LM, long words)."""
        if self.per_label:
            return [template.encode(text, j) for j in range(template.num_labels)]
        return [template.encode(text)]

    def read_positions(self, kind, encoded) -> List[int]:
        start = kind.read_position(encoded)
        last = len(encoded.token_ids) - 1  # a shorter word's extra positions are weighted 0
        return [min(start + i, last) for i in range(self.width)]

    def scores(self, classifier, picked):
        """[B, labels] from the hidden states [B, W, H] at the read positions."""
        if self.width == 1:  # exactly the one-token verbalizer: logits of the label words
            return tf.gather(classifier.project(picked[:, 0]), self.label_ids, axis=-1)
        logp = tf.nn.log_softmax(classifier.project(picked), -1)  # [B, W, V]
        per_token = tf.gather(tf.transpose(logp, [1, 2, 0]), self.tokens, batch_dims=1)  # [W, L, B]
        return tf.einsum('wlb,lw->bl', per_token, self.token_weights)

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """[texts, views, labels] -> [texts, labels]: with one view per class, its own score."""
        if self.per_label:
            return np.einsum('nll->nl', scores)
        return scores[:, 0]

    def arrays(self) -> Dict[str, np.ndarray]:
        return {}

    def set_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        pass



class LinearHead(Verbalizer):
    """A Dense layer on the summary position, trained with the prompts."""
    name = 'linear'

    def __init__(self, classifier):
        self.width, self.per_label = 1, False
        self.dense = keras.layers.Dense(
            classifier.template.num_labels, name='Classifier-Head',
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        encoder = classifier.encoder
        read = keras.Input(shape=(), dtype='int32', name='Input-Read-Position')
        picked = ReadPosition(name='Classifier-Head-Read')([encoder.outputs[0], read])
        self._model = keras.Model(list(encoder.inputs) + [read], self.dense(picked))

    def inference_model(self, classifier) -> keras.Model:
        return self._model

    def training_model(self, classifier) -> keras.Model:
        return self._model

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def batch(self, classifier, examples, rng):
        """((model inputs..., read positions), labels); no auxiliary loss."""
        _checked_labels(examples, classifier.template.num_labels)
        encoded = [classifier.template.encode(text) for text, _ in examples]
        inputs = classifier.kind.inputs(pad([e.token_ids for e in encoded]))
        positions = np.array([self.read_positions(classifier.kind, e)[0] for e in encoded], 'int32')
        return tuple(inputs) + (positions,), np.array([label for _, label in examples], 'int32')

    def views(self, template, text) -> List:
        return [template.encode(text)]

    def read_positions(self, kind, encoded) -> List[int]:
        return [kind.summary_position(encoded)]

    def scores(self, classifier, picked):
        return self.dense(picked[:, 0])

    def combine(self, scores: np.ndarray) -> np.ndarray:
        return scores[:, 0]

    def arrays(self) -> Dict[str, np.ndarray]:
        kernel, bias = self.dense.get_weights()
        return {'head_kernel': kernel.astype('float32'), 'head_bias': bias.astype('float32')}

    def set_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        if 'head_kernel' not in arrays:
            raise ValueError('these prompts were trained without a linear head')
        self.dense.set_weights([arrays['head_kernel'], arrays['head_bias']])


HEADS = {'verbalizer': Verbalizer, 'linear': LinearHead}
