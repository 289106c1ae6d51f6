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
    """Label words through the model's own MLM/LM head."""
    name = 'verbalizer'

    def __init__(self, classifier):
        self.label_ids = tf.constant(classifier.template.label_ids, tf.int32)
        self._model = None

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

    def read_position(self, kind, encoded) -> int:
        return kind.read_position(encoded)

    def scores(self, classifier, picked):
        return tf.gather(classifier.project(picked), self.label_ids, axis=-1)

    def arrays(self) -> Dict[str, np.ndarray]:
        return {}

    def set_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        pass

    @property
    def weights(self) -> List[tf.Variable]:
        return []


class LinearHead(Verbalizer):
    """A Dense layer on the summary position, trained with the prompts."""
    name = 'linear'

    def __init__(self, classifier):
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
        positions = np.array([self.read_position(classifier.kind, e) for e in encoded], 'int32')
        return tuple(inputs) + (positions,), np.array([label for _, label in examples], 'int32')

    def read_position(self, kind, encoded) -> int:
        return kind.summary_position(encoded)

    def scores(self, classifier, picked):
        return self.dense(picked)

    def arrays(self) -> Dict[str, np.ndarray]:
        kernel, bias = self.dense.get_weights()
        return {'head_kernel': kernel.astype('float32'), 'head_bias': bias.astype('float32')}

    def set_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        if 'head_kernel' not in arrays:
            raise ValueError('these prompts were trained without a linear head')
        self.dense.set_weights([arrays['head_kernel'], arrays['head_bias']])

    @property
    def weights(self) -> List[tf.Variable]:
        return list(self.dense.weights)


HEADS = {'verbalizer': Verbalizer, 'linear': LinearHead}
