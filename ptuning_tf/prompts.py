"""Prompt-only persistence: save what P-tuning learned (a few KB), reload it exactly.

The artifact is one `.npz` file: the learned embedding rows, their ids, and a JSON
record of the template, label words, model kind and a fingerprint of the base
checkpoint, so a prompt is never silently applied to a different model.
"""
import io
import json
import os
import tempfile
from typing import Optional

import numpy as np

from . import __version__
from .checkpoint import CheckpointError, fingerprint
from .training import PromptClassifier

FORMAT = 'ptuning_tf.prompt/1'


class PromptFileError(ValueError):
    """A prompt file that is missing, corrupt, or made for another base model."""


def save_prompt(classifier: PromptClassifier, path: str, extra: Optional[dict] = None) -> str:
    """Write the learned prompt rows and their metadata atomically; returns the path."""
    if classifier.config.mode != 'ptuning':
        raise PromptFileError('only P-tuning learns a prompt; a fine-tuned model must be saved whole')
    meta = {
        'format': FORMAT, 'version': __version__, 'kind': classifier.config.kind,
        'template': classifier.template.config(), 'trainable_ids': classifier.template.prompt_ids,
        'aux_loss': classifier.aux_loss, 'whole_word_mask': classifier.whole_word_mask,
        'base_fingerprint': fingerprint(classifier.spec.checkpoint_path)
        if classifier.spec and classifier.spec.checkpoint_path else None,
    }
    meta.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, rows=classifier.prompt_rows().astype('float32'),
             ids=np.array(classifier.template.prompt_ids, 'int32'), meta=np.array(json.dumps(meta)))
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npz', dir=directory)
    except OSError as e:
        raise PromptFileError('cannot write to %s: %s' % (directory, e.strerror)) from e
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_prompt(path: str):
    """(rows, ids, meta) of a prompt file, checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            rows, ids, meta = data['rows'], data['ids'], json.loads(str(data['meta']))
    except FileNotFoundError:
        raise PromptFileError('prompt file not found: %s' % path) from None
    except (OSError, ValueError, KeyError) as e:
        raise PromptFileError('%s is not a ptuning_tf prompt file: %s' % (path, e)) from None
    if meta.get('format') != FORMAT:
        raise PromptFileError('%s has format %r, expected %r' % (path, meta.get('format'), FORMAT))
    return rows, ids, meta


def load_prompt(path: str, model_dir: Optional[str] = None, strict: bool = True,
                **build_kwargs) -> PromptClassifier:
    """Rebuild the classifier a prompt was trained with and put the prompt rows in.

    `model_dir` (or explicit config/checkpoint/vocab paths in `build_kwargs`) must be
    the base model the prompt was trained on; `strict` checks its fingerprint.
    """
    rows, ids, meta = read_prompt(path)
    template = meta['template']
    classifier = PromptClassifier.build(
        model_dir, kind=meta['kind'], pattern=template['pattern'],
        label_words=template['label_words'], prompt_ids=template['prompt_ids'],
        maxlen=template['maxlen'], aux_loss=meta.get('aux_loss', True),
        whole_word_mask=meta.get('whole_word_mask', False), **build_kwargs)
    expected = meta.get('base_fingerprint')
    if strict and expected and classifier.spec.checkpoint_path:
        try:
            actual = fingerprint(classifier.spec.checkpoint_path)
        except CheckpointError:
            actual = None
        if actual != expected:
            raise PromptFileError('%s was trained on another base model (fingerprint %s, this '
                                  'checkpoint %s); pass strict=False to use it anyway'
                                  % (path, expected, actual))
    if list(ids) != list(classifier.template.prompt_ids):
        raise PromptFileError('%s: prompt ids %s do not match the template' % (path, list(ids)))
    classifier.set_prompt_rows(rows)
    return classifier
