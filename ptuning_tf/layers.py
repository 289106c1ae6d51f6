"""The P-tuning embedding: one Keras layer in which only the prompt rows learn."""
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from bert4keras.layers import Embedding
import tf_keras as keras
from tf_keras.utils import register_keras_serializable

DEFAULT_PROMPT_IDS = tuple(range(1, 9))  # [unused1]..[unused8] in the Chinese BERT vocab


def row_sparse_projection(hidden, matrix, row_ids: Sequence[int]):
    """`hidden @ matrix^T` (the tied output head) whose gradient reaches only `row_ids`.

    Masking the gradient after the fact, as the lookup does, would still compute the
    full [vocab x hidden] weight gradient, as costly as the head's forward pass, only
    to zero it: that is most of the work a frozen model can save. Here the backward
    pass forms only the gradient of the listed rows, so for any `matrix` whose other
    rows get zero gradient anyway the result is exactly the masked one.
    """
    rows = tf.constant([[int(i)] for i in row_ids], tf.int32)

    @tf.custom_gradient
    def project(h, m):
        flat = tf.reshape(h, [-1, tf.shape(h)[-1]])
        logits = tf.matmul(flat, tf.transpose(m))  # as Keras' dot: bit-equal to the plain head
        out_shape = tf.concat([tf.shape(h)[:-1], tf.shape(m)[:1]], 0)

        def grad(upstream):
            up = tf.reshape(upstream, [-1, tf.shape(m)[0]])
            d_hidden = tf.reshape(tf.matmul(up, m), tf.shape(h))
            d_rows = tf.matmul(tf.gather(up, rows[:, 0], axis=1), flat, transpose_a=True)
            return d_hidden, tf.scatter_nd(rows, d_rows, tf.shape(m))
        return tf.reshape(logits, out_shape), grad

    return project(hidden, tf.convert_to_tensor(matrix))


@register_keras_serializable(package='ptuning_tf')
class PtuningEmbedding(Embedding):
    """bert4keras' `Embedding` whose gradient reaches only the rows in `trainable_ids`.

    For the lookup, `call` temporarily replaces the matrix E by
    `E*m + stop_gradient(E)*(1-m)`: the forward value is unchanged, the gradient of
    every other row is zero. E is restored after the call, so the layer keeps one
    variable and stays serialisable. The MLM/LM head reuses this layer in
    `mode='dense'` (tied weights); there the same gradient comes from
    `row_sparse_projection`, which never forms the full-vocabulary weight gradient.
    """

    def __init__(self, *args, trainable_ids: Optional[Sequence[int]] = DEFAULT_PROMPT_IDS,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.trainable_ids = None if trainable_ids is None else tuple(int(i) for i in trainable_ids)
        self._row_mask = None
        if self.trainable_ids is None:  # full fine-tuning: every row learns
            return
        if not self.trainable_ids:
            raise ValueError('PtuningEmbedding needs at least one trainable id')
        bad = [i for i in self.trainable_ids if not 0 <= i < self.input_dim]
        if bad:
            raise ValueError('trainable ids %s outside the vocabulary (size %d)'
                             % (bad, self.input_dim))
        mask = np.zeros((self.input_dim, 1), dtype='float32')
        mask[list(self.trainable_ids)] = 1.0
        self._row_mask = tf.constant(mask)

    def call(self, inputs, mode='embedding'):
        if self._row_mask is None:
            return super().call(inputs, mode)
        if mode == 'dense':
            return row_sparse_projection(inputs, self.embeddings, self.trainable_ids)
        embeddings = self.embeddings
        mask = tf.cast(self._row_mask, embeddings.dtype)
        self.embeddings = embeddings * mask + tf.stop_gradient(embeddings) * (1.0 - mask)
        try:
            return super().call(inputs, mode)
        finally:
            self.embeddings = embeddings

    def get_config(self):
        config = super().get_config()
        config['trainable_ids'] = None if self.trainable_ids is None else list(self.trainable_ids)
        return config


@register_keras_serializable(package='ptuning_tf')
class TargetRows(keras.layers.Layer):
    """The hidden states [N, H] of the positions whose target id is not 0, row-major.

    `losses.gathered_crossentropy` picks the targets in the same order, so the
    vocabulary head only runs where a token is predicted.
    """

    def call(self, inputs):
        hidden, targets = inputs
        return tf.boolean_mask(hidden, tf.not_equal(tf.cast(targets, tf.int32), 0))

    def compute_mask(self, inputs, mask=None):
        return None


@register_keras_serializable(package='ptuning_tf')
class ReadPosition(keras.layers.Layer):
    """hidden[b, positions[b]]: the one position a linear head reads."""

    def call(self, inputs):
        hidden, positions = inputs
        return tf.gather(hidden, tf.cast(positions, tf.int32), batch_dims=1)

    def compute_mask(self, inputs, mask=None):
        return None


@register_keras_serializable(package='ptuning_tf')
class CausalMask(keras.layers.Layer):
    """The GPT's lower-triangular attention mask as a named, serialisable layer.

    bert4keras builds it with a `Lambda` around a Python closure, which Keras refuses
    to reload from a `.keras` file (safe mode); this layer computes the same mask.
    """

    def call(self, token_ids):
        idxs = tf.range(tf.shape(token_ids)[1])
        return idxs[None, :] <= idxs[:, None]

    def compute_mask(self, inputs, mask=None):
        return None


def custom_objects() -> dict:
    """Everything needed to deserialise a saved model that contains bert4keras layers."""
    from bert4keras.layers import custom_objects as b4k_objects
    objects = dict(b4k_objects)
    objects['PtuningEmbedding'] = PtuningEmbedding
    objects['ptuning_tf>PtuningEmbedding'] = PtuningEmbedding
    return objects
