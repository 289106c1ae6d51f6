"""The one loss every template kind, method and pretraining share.

Targets are an int array the shape of the input: the token to predict *at* each
position, 0 where nothing is predicted (kinds.py builds them).
"""
import tensorflow as tf


def masked_crossentropy(y_true, y_pred):
    """Cross-entropy over logits at positions with target id != 0, averaged over them."""
    y_true = tf.cast(y_true, tf.int32)
    weights = tf.cast(tf.not_equal(y_true, 0), y_pred.dtype)
    losses = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def gathered_crossentropy(y_true, y_pred):
    """`masked_crossentropy` when `y_pred` holds logits only at the targeted positions.

    `y_pred` is [N, V], the head applied to `TargetRows` of the hidden states; the
    targets are picked in the same row-major order. The value is the same as the
    full-sequence loss, without computing the vocabulary softmax where nothing is
    predicted (85% of the positions under BERT's 15% masking, and all padding).
    """
    y_true = tf.cast(y_true, tf.int32)
    picked = tf.boolean_mask(y_true, tf.not_equal(y_true, 0))
    losses = tf.keras.losses.sparse_categorical_crossentropy(picked, y_pred, from_logits=True)
    return tf.reduce_sum(losses) / tf.maximum(tf.cast(tf.size(picked), y_pred.dtype), 1.0)
