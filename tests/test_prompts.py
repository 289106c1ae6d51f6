"""Prompt-only persistence: a few KB, atomic, reloads to identical predictions, tied to its base."""
import os

import numpy as np
import pytest

from conftest import make_model_dir
from ptuning_tf import PromptClassifier, PromptFileError, load_prompt, save_prompt
from ptuning_tf import prompts as prompts_module

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']


@pytest.fixture(scope='module')
def trained(tiny_bert_dir):
    clf = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    clf.set_prompt_rows(np.random.RandomState(0).randn(8, 32).astype('float32'))
    return clf


def test_reload_gives_identical_predictions(trained, tiny_bert_dir, tmp_path):
    path = save_prompt(trained, str(tmp_path / 'p.npz'))
    assert os.path.getsize(path) < 8 * 1024
    fresh = load_prompt(path, tiny_bert_dir)
    np.testing.assert_array_equal(fresh.predict_proba(TEXTS), trained.predict_proba(TEXTS))
    np.testing.assert_array_equal(fresh.prompt_rows(), trained.prompt_rows())
    untouched = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    assert not np.array_equal(untouched.predict_proba(TEXTS), trained.predict_proba(TEXTS))


def test_other_base_model_is_refused(trained, tmp_path):
    path = save_prompt(trained, str(tmp_path / 'p.npz'))
    other = make_model_dir(str(tmp_path / 'other'), 'bert', seed=7)
    with pytest.raises(PromptFileError, match='another base model'):
        load_prompt(path, other)
    assert load_prompt(path, other, strict=False).prompt_rows().shape == (8, 32)


def test_failed_write_leaves_old_file_intact(trained, tmp_path, monkeypatch):
    path = str(tmp_path / 'p.npz')
    save_prompt(trained, path)
    before = open(path, 'rb').read()

    def broken_replace(src, dst):
        raise OSError('disk full')
    monkeypatch.setattr(prompts_module.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        save_prompt(trained, path)
    assert open(path, 'rb').read() == before
    assert os.listdir(str(tmp_path)) == ['p.npz']  # no temporary file left behind


def test_bad_prompt_files(tmp_path, tiny_bert_dir):
    with pytest.raises(PromptFileError, match='not found'):
        load_prompt(str(tmp_path / 'missing.npz'), tiny_bert_dir)
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'not a zip')
    with pytest.raises(PromptFileError, match='not a ptuning_tf prompt'):
        load_prompt(str(junk), tiny_bert_dir)


def test_unwritable_directory(trained, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(PromptFileError, match='cannot write'):
        save_prompt(trained, str(blocker / 'p.npz'))


def test_finetuned_models_have_no_prompt(tiny_bert_dir, tmp_path):
    clf = PromptClassifier.build(tiny_bert_dir, mode='finetune', maxlen=32)
    with pytest.raises(PromptFileError, match='only P-tuning'):
        save_prompt(clf, str(tmp_path / 'p.npz'))
