"""Prompt-only persistence: a few KB, atomic, reloads to identical predictions, tied to its base."""
import os

import numpy as np
import pytest

from conftest import make_model_dir
from ptuning_tf import PromptClassifier, PromptFileError, load_prompt, pattern, save_prompt
from ptuning_tf import prompts as prompts_module
from ptuning_tf.checkpoint import fingerprint
from ptuning_tf.prompts import read_prompt

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']


def _with_random_prompt(clf, seed=0):
    n = len(clf.template.prompt_ids)
    clf.set_prompt_rows(np.random.RandomState(seed).randn(n, 32).astype('float32'))
    return clf


@pytest.fixture(scope='module')
def trained(tiny_bert_dir):
    return _with_random_prompt(PromptClassifier.build(tiny_bert_dir, maxlen=32))


@pytest.fixture(scope='module')
def other_base(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('other')), 'bert', seed=7)


def test_reload_gives_identical_predictions(trained, tiny_bert_dir, tmp_path):
    path = save_prompt(trained, str(tmp_path / 'p.npz'))
    assert path == str(tmp_path / 'p.npz')
    # 8 rows x 32 floats plus metadata; the model itself is ~60k parameters
    assert os.path.getsize(path) < 4 * 1024
    fresh = load_prompt(path, tiny_bert_dir)
    np.testing.assert_array_equal(fresh.prompt_rows(), trained.prompt_rows())
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), trained.predict_proba(TEXTS))
    # ...and the prompt is what makes them equal: a fresh model predicts differently
    untouched = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    assert not np.allclose(untouched.predict_proba(TEXTS), trained.predict_proba(TEXTS))


def test_metadata_records_template_and_base(trained, tiny_bert_dir, tmp_path):
    path = save_prompt(trained, str(tmp_path / 'p.npz'), extra={'note': 'x'})
    rows, ids, meta = read_prompt(path)
    assert rows.shape == (8, 32) and rows.dtype == np.float32 and list(ids) == list(range(1, 9))
    assert meta['format'] == 'ptuning_tf.prompt/1' and meta['kind'] == 'bert' and meta['note'] == 'x'
    assert meta['template'] == trained.template.config()
    assert meta['base_fingerprint'] == fingerprint(os.path.join(tiny_bert_dir, 'bert_model.ckpt'))


def test_gpt_prompt_with_custom_template_round_trips(tiny_gpt_dir, tmp_path):
    clf = _with_random_prompt(PromptClassifier.build(
        tiny_gpt_dir, kind='gpt', maxlen=24, pattern=pattern(3, 2, 'gpt'), label_words=('差', '好'),
        prompt_ids=[11, 12, 13, 14, 15], aux_loss=False), seed=4)
    path = save_prompt(clf, str(tmp_path / 'gpt.npz'))
    fresh = load_prompt(path, tiny_gpt_dir)  # template, label words, ids come from the file
    assert fresh.config.kind == 'gpt' and fresh.template.config() == clf.template.config()
    assert fresh.aux_loss is False and fresh.embedding.trainable_ids == (11, 12, 13, 14, 15)
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_other_base_model_is_refused(trained, other_base, tmp_path):
    path = save_prompt(trained, str(tmp_path / 'p.npz'))
    with pytest.raises(PromptFileError, match='another base model'):
        load_prompt(path, other_base)
    # explicitly allowed: the rows go in unchanged
    loose = load_prompt(path, other_base, strict=False)
    np.testing.assert_array_equal(loose.prompt_rows(), trained.prompt_rows())


def test_failed_replace_leaves_old_file_intact(trained, tmp_path, monkeypatch):
    path = str(tmp_path / 'p.npz')
    save_prompt(trained, path)
    before = open(path, 'rb').read()

    def broken_replace(src, dst):
        raise OSError('disk full')
    monkeypatch.setattr(prompts_module.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        save_prompt(trained, path, extra={'version_of_the_file': 2})  # would change the bytes
    assert open(path, 'rb').read() == before
    assert os.listdir(str(tmp_path)) == ['p.npz']  # no temporary file left behind


class _FailingFile:
    """A file that dies half-way through the write (disk full, Ctrl-C)."""

    def __init__(self, f, error):
        self.f, self.error = f, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        raise self.error


@pytest.mark.parametrize('error', [OSError(28, 'No space left on device'), KeyboardInterrupt()])
@pytest.mark.parametrize('existing', [False, True])
def test_interrupted_write_leaves_no_partial_file(trained, tmp_path, monkeypatch, error, existing):
    path = str(tmp_path / 'p.npz')
    if existing:
        save_prompt(trained, path)
    before = open(path, 'rb').read() if existing else None
    real_fdopen = os.fdopen
    monkeypatch.setattr(prompts_module.os, 'fdopen',
                        lambda fd, mode: _FailingFile(real_fdopen(fd, mode), error))
    with pytest.raises(type(error)):
        save_prompt(trained, path, extra={'version_of_the_file': 2})
    monkeypatch.undo()
    if existing:
        assert open(path, 'rb').read() == before
        assert os.listdir(str(tmp_path)) == ['p.npz']
    else:
        assert os.listdir(str(tmp_path)) == []


def test_bad_prompt_files(tmp_path, tiny_bert_dir, trained):
    with pytest.raises(PromptFileError, match='not found'):
        load_prompt(str(tmp_path / 'missing.npz'), tiny_bert_dir)
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'not a zip')
    with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
        load_prompt(str(junk), tiny_bert_dir)
    # a truncated (half-copied) prompt file
    good = save_prompt(trained, str(tmp_path / 'good.npz'))
    data = open(good, 'rb').read()
    (tmp_path / 'cut.npz').write_bytes(data[:len(data) // 2])
    with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
        load_prompt(str(tmp_path / 'cut.npz'), tiny_bert_dir)
    (tmp_path / 'empty.npz').write_bytes(b'')
    with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
        load_prompt(str(tmp_path / 'empty.npz'), tiny_bert_dir)
    # an .npz of something else
    np.savez(str(tmp_path / 'other.npz'), meta=np.array('{"format": "x"}'), rows=np.zeros(3))
    with pytest.raises(PromptFileError, match="format 'x'"):
        load_prompt(str(tmp_path / 'other.npz'), tiny_bert_dir)


def test_unwritable_directory(trained, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(PromptFileError, match='cannot write'):
        save_prompt(trained, str(blocker / 'p.npz'))
    assert blocker.read_text() == 'x'


def test_finetuned_models_have_no_prompt(tiny_bert_dir, tmp_path):
    clf = PromptClassifier.build(tiny_bert_dir, mode='finetune', maxlen=32)
    with pytest.raises(PromptFileError, match='only P-tuning'):
        save_prompt(clf, str(tmp_path / 'p.npz'))
    assert not os.listdir(str(tmp_path))


def test_saved_prompt_is_readable_like_a_plain_file(trained, tmp_path):
    old = os.umask(0o022)
    try:
        path = save_prompt(trained, str(tmp_path / 'p.npz'))  # written via mkstemp (0600)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
