"""One save and one load for every method.

`save(classifier, out_dir)` writes one directory, atomically (a crash leaves the old
directory or the new one, never a mix):

    classifier.json   format, library version, the ClassifierConfig, and the base model:
                      its family and a fingerprint of every variable
    prompt.npz        what a prompt method learned (a few KB): the named arrays of
                      `classifier.state()`, with the same record inside, so the file
                      alone is self-describing and can be copied anywhere
    model/            fine-tuning only: the whole model as a bert4keras checkpoint
                      directory (it loads as a base model elsewhere too)

`load(path, model_dir=...)` takes that directory or its prompt.npz, rebuilds the
classifier on its base model (a prompt's base is given; a fine-tuned model is its own)
and refuses a base the prompt was not trained on. Files of 0.1.0 (prompt.npz of
P-tuning v1/v2, fine-tuned model directories) still load.
"""
import io
import json
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np

from . import __version__
from .checkpoint import (CheckpointError, atomic_dir_write, embedding_fingerprint,
                         model_fingerprint, read_json, save_model_dir)
from .classifier import ClassifierConfig, PromptClassifier
from .models import BackboneSpec

FORMAT = 'ptuning_tf.saved/1'
RECORD_FILE = 'classifier.json'
STATE_FILE = 'prompt.npz'
MODEL_SUBDIR = 'model'
OLD_PROMPT, OLD_DEEP, OLD_FINETUNED = 'ptuning_tf.prompt/1', 'ptuning_tf.prompt/2', 'ptuning_tf.finetuned/1'
FLAGS = {'model_dir': '--model-dir', 'config_path': '--config', 'checkpoint_path': '--checkpoint',
         'vocab_path': '--vocab', 'family': '--family'}


class PromptFileError(ValueError):
    """A saved classifier that is missing, corrupt, or made for another base model."""


def base_record(spec: Optional[BackboneSpec]) -> dict:
    if spec is None or spec.checkpoint_path is None:
        return {}
    return {'family': spec.family.name, 'fingerprint': model_fingerprint(spec.checkpoint_path),
            'checkpoint': os.path.abspath(spec.checkpoint_path)}


def save(classifier: PromptClassifier, out_dir: str, extra_files: Optional[Dict[str, str]] = None,
         dtype: Optional[str] = None) -> str:
    """Write the classifier's record and learned state as one directory; returns it.

    `extra_files` (name -> text, e.g. metrics.json) are written in the same atomic
    step. A fine-tuned model is written float32 unless `dtype` says otherwise.
    """
    method = classifier.method
    record = {'format': FORMAT, 'version': __version__, 'config': classifier.config.to_dict(),
              'base': base_record(classifier.spec),
              'state': MODEL_SUBDIR if method.saves_checkpoint else STATE_FILE}
    text = json.dumps(record, indent=2, ensure_ascii=False)
    if method.saves_checkpoint:
        spec = classifier.spec
        if spec is None:
            raise ValueError('the classifier has no base model files (build it with PromptClassifier.build)')
    else:
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(text), **classifier.state())

    def write(tmp):
        with open(os.path.join(tmp, RECORD_FILE), 'w', encoding='utf-8') as f:
            f.write(text)
        if method.saves_checkpoint:
            save_model_dir(classifier.transformer, os.path.join(tmp, MODEL_SUBDIR), spec.config,
                           spec.vocab_path, dtype)
        else:
            with open(os.path.join(tmp, STATE_FILE), 'wb') as f:
                f.write(buffer.getvalue())
        for name, content in (extra_files or {}).items():
            with open(os.path.join(tmp, name), 'w', encoding='utf-8') as f:
                f.write(content)

    try:
        atomic_dir_write(out_dir, write)
    except CheckpointError as e:
        raise PromptFileError(str(e)) from e
    return out_dir


# ---- reading ----------------------------------------------------------------------------

def _read_npz(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            arrays = {name: data[name] for name in data.files if name != 'meta'}
    except FileNotFoundError:
        raise PromptFileError('prompt file not found: %s' % path) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated/empty too
        raise PromptFileError('%s is not a ptuning_tf prompt file: %s' % (path, e)) from None
    if not isinstance(meta, dict) or meta.get('format') not in (FORMAT, OLD_PROMPT, OLD_DEEP):
        found = meta.get('format') if isinstance(meta, dict) else None
        raise PromptFileError('%s has format %r, expected %r' % (path, found, FORMAT))
    return arrays, meta


def _read_json(path: str) -> dict:
    record = read_json(path, PromptFileError)
    if not isinstance(record, dict) or record.get('format') not in (FORMAT, OLD_FINETUNED):
        found = record.get('format') if isinstance(record, dict) else None
        raise PromptFileError('%s has format %r, expected %r' % (path, found, FORMAT))
    return record


def _from_old(meta: dict) -> dict:
    """A 0.1.0 record (prompt/1, prompt/2, finetuned/1) in the current layout."""
    template = meta['template']
    if meta['format'] == OLD_DEEP:
        method = dict(name='ptuning_v2', prompt_length=meta['prompt_length'], head=meta['head'])
    elif meta['format'] == OLD_FINETUNED:
        method = dict(name='finetune')
    else:
        method = dict(name='ptuning')
    config = dict(kind=meta['kind'], method=method, pattern=template['pattern'],
                  label_words=template['label_words'], prompt_ids=template['prompt_ids'],
                  maxlen=template['maxlen'],
                  loss=dict(aux_loss=meta.get('aux_loss', True),
                            whole_word_mask=meta.get('whole_word_mask', False)))
    base = {'family': meta.get('family'), 'embedding_fingerprint': meta.get('base_fingerprint')}
    return {'format': meta['format'], 'config': config, 'base': base}


def read_saved(path: str) -> Tuple[dict, Dict[str, np.ndarray], Optional[str]]:
    """(record, arrays, own model directory or None) of anything `save` (or 0.1.0) wrote."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, RECORD_FILE)):
            record = _read_json(os.path.join(path, RECORD_FILE))
            if record['format'] == OLD_FINETUNED:  # a 0.1.0 fine-tuned model directory
                return _from_old(record), {}, path
            if record.get('state') == MODEL_SUBDIR:
                return record, {}, os.path.join(path, MODEL_SUBDIR)
            arrays, _ = _read_npz(os.path.join(path, STATE_FILE))
            return record, arrays, None
        old = os.path.join(path, MODEL_SUBDIR)  # a 0.1.0 `train --out` of fine-tuning
        if os.path.isfile(os.path.join(old, RECORD_FILE)):
            return read_saved(old)
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            return read_saved(os.path.join(path, STATE_FILE))
        raise PromptFileError('%s holds no saved classifier (no %s or %s)'
                              % (path, RECORD_FILE, STATE_FILE))
    arrays, meta = _read_npz(path)
    if meta['format'] != FORMAT:
        meta = _from_old(meta)
    arrays.pop('ids', None)  # 0.1.0 files also stored the prompt ids (the template has them)
    return meta, arrays, None


def _check_base(path: str, record: dict, spec: BackboneSpec, described: str) -> None:
    """Refuse a base model other than the one the saved state was trained on.

    Checked before anything is built, so the answer is "another base model", not some
    symptom of it (a missing variable, a shape).
    """
    base = record.get('base') or {}
    family = spec.family.name
    if base.get('family') and family and base['family'] != family:
        raise PromptFileError('%s was trained on a %s model; %s is a %s model'
                              % (path, base['family'], described, family))
    if spec.checkpoint_path is None:
        return
    if base.get('fingerprint'):
        expected, actual = base['fingerprint'], model_fingerprint(spec.checkpoint_path)
    elif base.get('embedding_fingerprint'):  # 0.1.0: only the word embeddings were hashed
        expected, actual = base['embedding_fingerprint'], embedding_fingerprint(spec.checkpoint_path)
    else:
        return
    if actual != expected:
        trained_on = base.get('checkpoint') or 'fingerprint %s' % expected
        raise PromptFileError('%s was trained on another base model (%s), not %s; pass '
                              'strict=False to use it anyway' % (path, trained_on, described))


def _named_family(record: dict) -> Optional[str]:
    """A family the prompt's base was built as that no checkpoint shows by itself
    (albert_unshared): the prompt only fits that build."""
    from .families import FAMILIES
    name = (record.get('base') or {}).get('family')
    return name if name in FAMILIES and not FAMILIES[name].automatic else None


def load(path: str, model_dir: Optional[str] = None, strict: bool = True,
         **build_kwargs) -> PromptClassifier:
    """Rebuild a saved classifier.

    A prompt needs its base model: `model_dir` (or config_path/checkpoint_path/
    vocab_path), default the shipped model of its kind; `strict` refuses a base other
    than the one it was trained on. A fine-tuned model is its own base.
    """
    record, arrays, own_model = read_saved(path)
    try:
        config = ClassifierConfig.from_dict(record['config'])
    except (KeyError, TypeError, ValueError) as e:
        raise PromptFileError('%s: unreadable classifier record (%s)' % (path, e)) from e
    if own_model is not None:
        given = [FLAGS.get(k, k) for k, v in dict(build_kwargs, model_dir=model_dir).items() if v]
        if given:
            raise PromptFileError('%s is a fine-tuned model with its own weights and vocab; drop %s'
                                  % (path, ', '.join(given)))
        spec = BackboneSpec.from_dir(own_model)
    else:
        config.method = config.method.for_inference()
        kwargs = {k: build_kwargs.pop(k, None) for k in ('config_path', 'checkpoint_path', 'vocab_path')}
        family = build_kwargs.pop('family', None) or _named_family(record)
        if build_kwargs:
            raise TypeError('unexpected arguments: %s' % ', '.join(build_kwargs))
        spec = BackboneSpec.resolve(model_dir, kind=config.kind, family=family, **kwargs)
        if strict:
            _check_base(path, record, spec, model_dir or spec.checkpoint_path)
    classifier = PromptClassifier.from_config(config, spec)
    try:
        classifier.set_state(arrays)
    except (ValueError, KeyError) as e:  # shapes of another model size, a missing array
        raise PromptFileError('%s does not fit this base model: %s' % (path, e)) from None
    return classifier

