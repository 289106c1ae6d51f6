"""Whole-model persistence for fine-tuning, which learns every weight and so has no prompt.

`save_finetuned` writes an ordinary bert4keras/Google-format model directory
(config.json, bert_model.ckpt.*, vocab.txt, through `checkpoint.save_model_dir`) plus
`classifier.json` with the template and label words, so the directory alone rebuilds
the classifier (`load_finetuned`) and still loads as a base model anywhere else.
`load_classifier` lets one entry point (the CLI's eval/predict) take a prompt file, a
fine-tuned model directory, or the `--out` directory of `train` that holds either.
"""
import json
import os
from typing import Optional

from . import __version__
from .checkpoint import CheckpointError, fingerprint, read_config, save_model_dir
from .prompts import PromptFileError, load_prompt
from .training import PromptClassifier

FORMAT = 'ptuning_tf.finetuned/1'
META_FILE = 'classifier.json'
PROMPT_FILE = 'prompt.npz'  # what `train --mode ptuning` writes into --out
MODEL_SUBDIR = 'model'  # what `train --mode finetune` writes into --out
FLAGS = {'model_dir': '--model-dir', 'config_path': '--config', 'checkpoint_path': '--checkpoint',
         'vocab_path': '--vocab'}


def save_finetuned(classifier: PromptClassifier, out_dir: str, dtype: Optional[str] = None) -> str:
    """Write a fine-tuned classifier as a model directory (atomically); returns the directory.

    float32 by default, so the reloaded classifier predicts exactly what this one does.
    """
    if classifier.config.mode != 'finetune':
        raise PromptFileError('only a fine-tuned classifier is saved whole; P-tuning learned a '
                              'prompt: use save_prompt')
    if classifier.spec is None:
        raise ValueError('the classifier has no base model files (build it with PromptClassifier.build)')
    spec = classifier.spec
    meta = {'format': FORMAT, 'version': __version__, 'kind': classifier.config.kind,
            'mode': 'finetune', 'template': classifier.template.config(),
            'aux_loss': classifier.aux_loss, 'whole_word_mask': classifier.whole_word_mask,
            'base_fingerprint': fingerprint(spec.checkpoint_path) if spec.checkpoint_path else None}
    save_model_dir(classifier.transformer, out_dir, read_config(spec.config_path), spec.vocab_path,
                   dtype, {META_FILE: json.dumps(meta, indent=2, ensure_ascii=False)})
    return out_dir


def read_finetuned_meta(model_dir: str) -> dict:
    """The checked `classifier.json` of a fine-tuned model directory."""
    path = os.path.join(model_dir, META_FILE)
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except OSError as e:
        raise CheckpointError('%s is not a fine-tuned classifier: cannot read %s (%s)'
                              % (model_dir, META_FILE, e.strerror)) from e
    except json.JSONDecodeError as e:
        raise CheckpointError('%s is not valid JSON: %s' % (path, e)) from e
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        found = meta.get('format') if isinstance(meta, dict) else None
        raise CheckpointError('%s has format %r, expected %r' % (path, found, FORMAT))
    return meta


def load_finetuned(model_dir: str) -> PromptClassifier:
    """Rebuild a classifier written by `save_finetuned` from its directory alone."""
    meta = read_finetuned_meta(model_dir)
    template = meta['template']
    return PromptClassifier.build(
        model_dir, kind=meta['kind'], mode='finetune', pattern=template['pattern'],
        label_words=template['label_words'], prompt_ids=template['prompt_ids'],
        maxlen=template['maxlen'], aux_loss=meta.get('aux_loss', True),
        whole_word_mask=meta.get('whole_word_mask', False))


def resolve_saved(path: str) -> str:
    """The prompt file or fine-tuned model directory that `path` names.

    A `train --out` directory names what it holds (model/ or prompt.npz), so users
    need not know which mode wrote it.
    """
    if not os.path.isdir(path):
        return path
    for candidate in (path, os.path.join(path, MODEL_SUBDIR)):
        if os.path.isfile(os.path.join(candidate, META_FILE)):
            return candidate
    if os.path.isfile(os.path.join(path, PROMPT_FILE)):
        return os.path.join(path, PROMPT_FILE)
    raise PromptFileError('%s holds neither a %s nor a fine-tuned model (%s)'
                          % (path, PROMPT_FILE, META_FILE))


def load_classifier(path: str, strict: bool = True, **build_kwargs) -> PromptClassifier:
    """A prompt file on its base model (`build_kwargs`), or a fine-tuned model directory."""
    path = resolve_saved(path)
    if not os.path.isdir(path):
        return load_prompt(path, strict=strict, **build_kwargs)
    given = [FLAGS.get(k, k) for k, v in build_kwargs.items() if v]
    if given:
        raise PromptFileError('%s is a fine-tuned model with its own weights and vocab; drop %s'
                              % (path, ', '.join(given)))
    return load_finetuned(path)
