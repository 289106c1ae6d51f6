"""Reading and writing Google/bert4keras-format checkpoints (config.json, ckpt, vocab).

bert4keras 0.11.5 can read such checkpoints but its writer needs TF1 graph mode and
only saves trainable weights, so this module writes them itself with the `SaveV2` op:
every weight of every mapped layer, under the variable names of Google's BERT.
"""
import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, Optional

import numpy as np
import tensorflow as tf


class CheckpointError(ValueError):
    """A model directory, config, checkpoint or vocab that cannot be used."""


VOCAB_SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')


def _umask() -> int:
    """The process umask (reading it means setting it; it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the umask (mkstemp would give 0600)."""
    return 0o666 & ~_umask()


def atomic_dir_write(final_dir: str, write_into) -> None:
    """Write a directory next to its destination, then rename it into place."""
    parent = os.path.dirname(os.path.abspath(final_dir)) or '.'
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
    except OSError as e:
        raise CheckpointError('cannot write %s: %s' % (final_dir, e.strerror or e)) from e
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a model directory is shared
    try:
        write_into(tmp)
        if os.path.exists(final_dir):
            # two renames (POSIX has no directory swap); if the second fails, put the old back
            old = final_dir.rstrip('/') + '.old-' + os.path.basename(tmp)
            os.rename(final_dir, old)
            try:
                os.rename(tmp, final_dir)
            except BaseException:
                os.rename(old, final_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise CheckpointError('cannot write %s: %s' % (final_dir, e.strerror or e)) from e
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new file.

    mkstemp creates the file 0600; it gets the mode a plain `open` would give
    (0666 less the umask) before the rename, so results stay readable by others.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write a UTF-8 text file atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode('utf-8'))


def save_variables(prefix: str, variables: Dict[str, np.ndarray]) -> None:
    """Write named arrays as a TF (V2 bundle) checkpoint readable by tf.train.load_checkpoint."""
    names = sorted(variables)
    tensors = [tf.convert_to_tensor(np.asarray(variables[n])) for n in names]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                      shape_and_slices=[''] * len(names), tensors=tensors)
    base = os.path.basename(prefix)
    with open(os.path.join(os.path.dirname(prefix), 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (base, base))


def load_variables(prefix: str) -> Dict[str, np.ndarray]:
    """All variables of a checkpoint, by name."""
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def transformer_variables(transformer, dtype: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Map a bert4keras Transformer's weights to checkpoint names (frozen ones included)."""
    out = {}
    for layer_name, names in transformer.variable_mapping().items():
        layer = transformer.layers.get(transformer.prefixed(layer_name))
        if layer is None:
            continue
        # layer.weights keeps the build order whether or not the layer is trainable.
        for weight, name in zip(layer.weights, names):
            value = np.asarray(weight.numpy())
            if name == 'cls/seq_relationship/output_weights':
                value = value.T
            out[name] = value.astype(dtype) if dtype else value
    return out


def save_model_dir(transformer, out_dir: str, config: dict, vocab_path: str,
                   dtype: Optional[str] = None, extra_files: Optional[Dict[str, str]] = None) -> None:
    """Write config.json, bert_model.ckpt.* and vocab.txt as one atomic directory.

    `dtype='float16'` halves the files; bert4keras casts back to float32 on load.
    """
    variables = transformer_variables(transformer, dtype)

    def write(tmp):
        save_variables(os.path.join(tmp, 'bert_model.ckpt'), variables)
        with open(os.path.join(tmp, 'config.json'), 'w', encoding='utf-8') as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
        shutil.copyfile(vocab_path, os.path.join(tmp, 'vocab.txt'))
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), 'w', encoding='utf-8') as f:
                f.write(text)

    atomic_dir_write(out_dir, write)


def resolve_model_dir(model_dir: str):
    """(config_path, checkpoint_prefix, vocab_path) of a model directory, checked."""
    if not os.path.isdir(model_dir):
        raise CheckpointError('model directory not found: %s' % model_dir)
    config = os.path.join(model_dir, 'bert_config.json')
    if not os.path.exists(config):
        config = os.path.join(model_dir, 'config.json')
    vocab = os.path.join(model_dir, 'vocab.txt')
    prefix = None
    for name in sorted(os.listdir(model_dir)):
        if name.endswith('.index'):
            prefix = os.path.join(model_dir, name[:-len('.index')])
            break
    for what, path in (('config', config), ('vocab', vocab)):
        if not os.path.exists(path):
            raise CheckpointError('%s missing in %s (expected %s)'
                                  % (what, model_dir, os.path.basename(path)))
    if prefix is None:
        raise CheckpointError('no checkpoint (*.index) in %s' % model_dir)
    return config, prefix, vocab


def read_json(path: str, error=None, what: str = '') -> dict:
    """A JSON file, or `error` (default CheckpointError) naming it: unreadable or malformed."""
    error = error or CheckpointError
    name = ('%s %s' % (what, path)).strip()
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except OSError as e:
        raise error('cannot read %s: %s' % (name, e.strerror)) from e
    except json.JSONDecodeError as e:
        raise error('%s is not valid JSON: %s' % (name, e)) from e


def read_config(config_path: str) -> dict:
    """Load a BERT config.json with a clear error for missing or malformed files."""
    config = read_json(config_path, what='config')
    if not isinstance(config, dict):
        raise CheckpointError('config %s is not a JSON object' % config_path)
    for key in ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads'):
        if key not in config:
            raise CheckpointError('config %s lacks "%s"' % (config_path, key))
    return config


def check_vocab(vocab_path: str) -> None:
    """Fail early when a vocab lacks a special token bert4keras' tokenizer needs.

    bert4keras silently leaves e.g. `_token_unk_id` unset for a missing `[UNK]`, which
    surfaces much later as an AttributeError deep inside tokenisation.
    """
    try:
        with open(vocab_path, encoding='utf-8') as f:
            tokens = {(line.split() or [line.strip()])[0] for line in f}
    except OSError as e:
        raise CheckpointError('cannot read vocab %s: %s' % (vocab_path, e.strerror)) from e
    except UnicodeDecodeError as e:
        raise CheckpointError('vocab %s is not UTF-8 text: %s' % (vocab_path, e)) from e
    missing = [t for t in VOCAB_SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise CheckpointError('vocab %s has no %s token%s (a BERT vocab needs %s)'
                              % (vocab_path, ', '.join(missing), 's' if len(missing) > 1 else '',
                                 ', '.join(VOCAB_SPECIAL_TOKENS)))


def check_checkpoint(checkpoint_path: str, config: dict,
                     word_embeddings: str = 'bert/embeddings/word_embeddings',
                     last_layer: Optional[str] = 'bert/encoder/layer_%d/output/dense/kernel') -> None:
    """Fail early, with names and shapes, when a checkpoint does not fit its config.

    `word_embeddings` and `last_layer` (a pattern of the layer index) are the family's
    variable names.
    """
    try:
        shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s'
                              % (checkpoint_path, str(e).splitlines()[0])) from e
    if word_embeddings not in shapes:
        raise CheckpointError('checkpoint %s has no %s: not a checkpoint of this model family'
                              % (checkpoint_path, word_embeddings))
    expected = [config['vocab_size'], config.get('embedding_size') or config['hidden_size']]
    if list(shapes[word_embeddings]) != expected:
        raise CheckpointError('checkpoint %s does not match its config: %s is %s, config says %s'
                              % (checkpoint_path, word_embeddings, list(shapes[word_embeddings]), expected))
    last = last_layer % (config['num_hidden_layers'] - 1) if last_layer else None
    if last and last not in shapes:
        raise CheckpointError('checkpoint %s does not match its config: no %s (num_hidden_layers=%d)'
                              % (checkpoint_path, last, config['num_hidden_layers']))


def embedding_fingerprint(checkpoint_path: str) -> str:
    """0.1.0's fingerprint: a hash of the token embeddings only (old prompt files hold it)."""
    value = tf.train.load_variable(checkpoint_path, 'bert/embeddings/word_embeddings')
    return hashlib.sha1(np.ascontiguousarray(value, dtype=np.float32).tobytes()).hexdigest()[:16]


FINGERPRINT_SAMPLE = 4096  # values per variable that enter the digest


def read_tensor(reader, checkpoint_path: str, name: str) -> np.ndarray:
    """One variable; a cut-short or damaged .data file is a CheckpointError that says so."""
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError) as e:
        raise CheckpointError('checkpoint %s is damaged or incomplete (reading %s: %s); copy it '
                              'again' % (checkpoint_path, name, str(e).splitlines()[0])) from None


def model_fingerprint(checkpoint_path: str) -> str:
    """A short hash of a whole checkpoint: every variable's name and shape, and its values.

    The values enter as their float32 sum and an evenly strided sample of
    `FINGERPRINT_SAMPLE` of them: cheap on a 400 MB BERT, yet any retrained or other
    model differs. A float16 export and its float32 load give the same digest only if
    the values are equal, which they are (the loader casts exactly).
    """
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s'
                              % (checkpoint_path, str(e).splitlines()[0])) from e
    digest = hashlib.sha1()
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        value = np.asarray(read_tensor(reader, checkpoint_path, name))
        digest.update(('%s %s\n' % (name, list(shape))).encode('utf-8'))
        if value.dtype.kind in 'fiu':
            flat = value.astype(np.float32).ravel()
            step = max(1, flat.size // FINGERPRINT_SAMPLE)
            digest.update(np.float32(flat.sum(dtype=np.float64)).tobytes())
            digest.update(np.ascontiguousarray(flat[::step]).tobytes())
    return digest.hexdigest()[:16]
