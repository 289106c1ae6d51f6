"""Prompt-only persistence: save what P-tuning learned (a few KB), reload it exactly.

The artifact is one `.npz` file: the learned embedding rows, their ids, and a JSON
record of the template, label words, model kind and a fingerprint of the base
checkpoint, so a prompt is never silently applied to a different model.

A prompt encoder (v1) is folded before saving: the file holds the rows it computed,
in the v1 format, and reloads into a plain classifier. P-tuning v2 files
(`ptuning_tf.prompt/2`) hold the per-layer prompts [L, m, H] (reparameterisation
folded) and, with a linear head, its kernel and bias.
"""
import io
import json
import os
import tempfile
import zipfile
from typing import Optional

import numpy as np
from tensorflow import errors as tf_errors

from . import __version__
from .checkpoint import CheckpointError, default_file_mode, fingerprint
from .training import PromptClassifier

FORMAT = 'ptuning_tf.prompt/1'  # input prompt rows (P-tuning v1, encoder folded)
DEEP_FORMAT = 'ptuning_tf.prompt/2'  # per-layer prompts (+ linear head) of P-tuning v2
REQUIRED = {FORMAT: ('rows', 'ids'), DEEP_FORMAT: ('prompts', 'ids')}


class PromptFileError(ValueError):
    """A prompt file that is missing, corrupt, or made for another base model."""


def save_prompt(classifier: PromptClassifier, path: str, extra: Optional[dict] = None) -> str:
    """Write the learned prompt rows and their metadata atomically; returns the path."""
    if classifier.config.mode != 'ptuning':
        raise PromptFileError('only P-tuning learns a prompt; a fine-tuned model must be saved whole')
    config = classifier.config
    meta = {
        'format': FORMAT, 'version': __version__, 'kind': config.kind,
        'template': classifier.template.config(), 'trainable_ids': classifier.template.prompt_ids,
        'aux_loss': classifier.aux_loss, 'whole_word_mask': classifier.whole_word_mask,
        'base_fingerprint': fingerprint(classifier.spec.checkpoint_path)
        if classifier.spec and classifier.spec.checkpoint_path else None,
        'method': config.method,
        'family': classifier.spec.family.name if classifier.spec else None,
    }
    if config.method == 'ptuning_v2':
        arrays = classifier.prompt_arrays()
        meta.update(format=DEEP_FORMAT, prompt_length=config.prompt_length, head=config.head,
                    trained_reparameterized=config.reparameterize)
    else:
        arrays = {'rows': classifier.prompt_rows().astype('float32')}
        meta['trained_prompt_encoder'] = config.prompt_encoder  # folded: informative only
    meta.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.array(classifier.template.prompt_ids, 'int32'),
             meta=np.array(json.dumps(meta)), **arrays)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npz', dir=directory)
    except OSError as e:
        raise PromptFileError('cannot write to %s: %s' % (directory, e.strerror)) from e
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(buffer.getvalue())
        os.chmod(tmp, default_file_mode())  # mkstemp's 0600 would hide the prompt from others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_prompt_arrays(path: str):
    """(arrays by name, meta) of a prompt file of either format, checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            arrays = {name: data[name] for name in data.files if name != 'meta'}
    except FileNotFoundError:
        raise PromptFileError('prompt file not found: %s' % path) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated/empty too
        raise PromptFileError('%s is not a ptuning_tf prompt file: %s' % (path, e)) from None
    if not isinstance(meta, dict) or meta.get('format') not in REQUIRED:
        found = meta.get('format') if isinstance(meta, dict) else None
        raise PromptFileError('%s has format %r, expected %r' % (path, found, FORMAT))
    missing = [name for name in REQUIRED[meta['format']] if name not in arrays]
    if missing:
        raise PromptFileError('%s is not a ptuning_tf prompt file: no %s' % (path, ', '.join(missing)))
    return arrays, meta


def read_prompt(path: str):
    """(rows, ids, meta) of a prompt file, checked; v2 `rows` are the prompts [L, m, H]."""
    arrays, meta = read_prompt_arrays(path)
    return arrays.get('rows', arrays.get('prompts')), arrays['ids'], meta


def load_prompt(path: str, model_dir: Optional[str] = None, strict: bool = True,
                **build_kwargs) -> PromptClassifier:
    """Rebuild the classifier a prompt was trained with and put the prompt rows in.

    `model_dir` (or explicit config/checkpoint/vocab paths in `build_kwargs`) must be
    the base model the prompt was trained on; `strict` checks its fingerprint.
    """
    arrays, meta = read_prompt_arrays(path)
    ids = arrays['ids']
    template = meta['template']
    deep = {}
    if meta['format'] == DEEP_FORMAT:  # folded: inference needs no reparameterisation
        deep = dict(method='ptuning_v2', prompt_length=meta['prompt_length'], head=meta['head'])
    classifier = PromptClassifier.build(
        model_dir, kind=meta['kind'], pattern=template['pattern'],
        label_words=template['label_words'], prompt_ids=template['prompt_ids'],
        maxlen=template['maxlen'], aux_loss=meta.get('aux_loss', True),
        whole_word_mask=meta.get('whole_word_mask', False), **deep, **build_kwargs)
    family = classifier.spec.family.name if classifier.spec else None
    if strict and meta.get('family') and family and meta['family'] != family:
        raise PromptFileError('%s was trained on a %s model; %s is a %s model'
                              % (path, meta['family'], model_dir or 'this base', family))
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
    try:
        if deep:
            classifier.set_prompt_arrays(arrays)
        else:
            classifier.set_prompt_rows(arrays['rows'])
    except (ValueError, tf_errors.InvalidArgumentError) as e:  # shapes of another model size
        raise PromptFileError('%s does not fit this base model: %s' % (path, e)) from None
    return classifier
