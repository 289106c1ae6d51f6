"""Bad input at the command line: one line naming the problem, exit 2, nothing written or half-made."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import make_model_dir
from ptuning_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POS = ['这个东西很好', '质量好价格便宜', '服务很好，推荐', '很喜欢，还会再买', '送货快，满意']
NEG = ['太差了', '质量不好，失望', '不会再买了', '价格贵，东西差', '服务太差，不满意']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    text = ''.join('%s\t1\n' % t for t in POS) + ''.join('%s\t0\n' % t for t in NEG)
    (d / 'train.tsv').write_text(text, encoding='utf-8')
    (d / 'gbk.tsv').write_bytes(text.encode('gbk'))
    return d


def _train(model_dir, data, out, *extra):
    return ['train', '--model-dir', model_dir, '--train', str(data / 'train.tsv'), '--valid',
            str(data / 'train.tsv'), '--epochs', '1', '--batch-size', '4', '--maxlen', '32',
            '--out', str(out)] + list(extra)


def _error(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith('ptuning-tf %s: ' % command), err
    return err[0]


@pytest.fixture(scope='module')
def trained(tiny_bert_dir, data, tmp_path_factory):
    out = tmp_path_factory.mktemp('t') / 'out'
    assert main(_train(tiny_bert_dir, data, out, '--lr', '0.02')) == 0
    return out


@pytest.mark.parametrize('extra, message', [
    (['--lr', '-1'], 'argument --lr: must be a positive number, got -1'),
    (['--lr', 'fast'], "argument --lr: 'fast' is not a number"),
    (['--epochs', '0'], 'argument --epochs: must be at least 1, got 0'),
    (['--batch-size', '0'], 'argument --batch-size: must be at least 1, got 0'),
    (['--maxlen', '-5'], 'argument --maxlen: must be at least 1'),
    (['--labeled-frac', '1.5'], 'argument --labeled-frac: must be in (0, 1]'),
    (['--patience', '0'], 'argument --patience: must be at least 1'),
    (['--label-words', '不,龘'], "label word '龘' is not in the vocabulary (it would be [UNK])"),
])
def test_bad_options_are_one_line_and_write_nothing(extra, message, tiny_bert_dir, data, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(_train(tiny_bert_dir, data, out, *extra)) == 2
    assert message in _error(capsys, 'train')
    assert not out.exists()  # no empty --out left behind


def test_metrics_record_every_option_and_the_version(trained):
    import ptuning_tf
    metrics = json.load(open(str(trained / 'metrics.json')))
    assert metrics['learning_rate'] == 0.02 and metrics['version'] == ptuning_tf.__version__
    options = metrics['options']
    assert options['lr'] == 0.02 and options['epochs'] == 1 and options['batch_size'] == 4
    assert options['label_words'] is None and options['method'] == 'ptuning' and options['seed'] == 0
    assert metrics['method'] == {'name': 'ptuning', 'prompt_encoder': 'none', 'prompt_init': ''}
    assert metrics['template']['label_words'] == ['不', '很'] and metrics['template']['maxlen'] == 32
    assert metrics['base']['fingerprint'] == json.load(open(str(trained / 'classifier.json')))['base']['fingerprint']


def test_long_label_words_and_the_categories_task_train_and_predict(tiny_bert_dir, tiny_gpt_dir, data,
                                                                   tmp_path, capsys):
    for model_dir, kind in ((tiny_bert_dir, 'mlm'), (tiny_gpt_dir, 'lm')):
        out = tmp_path / kind
        assert main(_train(model_dir, data, out, '--kind', kind, '--label-words', '失望,满意')) == 0
        assert main(['predict', str(out), '--model-dir', model_dir, '--text', '很满意']) == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert row['label'] in (0, 1) and len(row['probs']) == 2
    from ptuning_tf.data import DataError, shared_dir
    try:
        shared_dir()
    except DataError:
        return
    out = tmp_path / 'categories'
    assert main(['train', '--model-dir', tiny_bert_dir, '--dataset', 'categories', '--epochs', '1',
                 '--steps-per-epoch', '2', '--maxlen', '32', '--out', str(out)]) == 0
    metrics = json.load(open(str(out / 'metrics.json')))
    assert metrics['classes'] == 10 and metrics['labeled'] == 160 and metrics['k_per_class'] == 16
    assert metrics['template']['label_words'][:3] == ['书籍', '平板', '手机']
    assert main(['predict', str(out), '--model-dir', tiny_bert_dir, '--text', '这本书写得很好']) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])['probs']) == 10


def test_an_out_with_results_is_refused_unless_overwrite(trained, tiny_bert_dir, data, tmp_path, capsys):
    out = tmp_path / 'out'
    shutil.copytree(str(trained), str(out))
    (out / 'stray.txt').write_text('old')
    before = {n: (out / n).read_bytes() for n in os.listdir(str(out))}
    assert main(_train(tiny_bert_dir, data, out)) == 2
    assert 'already holds results' in _error(capsys, 'train')
    assert {n: (out / n).read_bytes() for n in os.listdir(str(out))} == before
    assert main(_train(tiny_bert_dir, data, out, '--overwrite')) == 0
    assert sorted(os.listdir(str(out))) == ['classifier.json', 'metrics.json', 'prompt.npz']  # no stray


def test_the_refusal_names_the_fix(trained, tiny_bert_dir, data, capsys):
    assert main(_train(tiny_bert_dir, data, trained)) == 2
    line = _error(capsys, 'train')
    assert 'already holds results (classifier.json, metrics.json, prompt.npz)' in line
    assert 'add --overwrite to replace them' in line


def test_empty_texts_are_refused(trained, tiny_bert_dir, capsys):
    for text in ('', '   '):
        assert main(['predict', str(trained), '--model-dir', tiny_bert_dir, '--text', '好', '--text', text]) == 2
        assert '--text number 2 is empty' in _error(capsys, 'predict')


def test_a_prompt_refuses_a_base_model_it_was_not_trained_on(trained, tiny_gpt_dir, tmp_path, capsys):
    other = make_model_dir(str(tmp_path / 'other'), 'bert', seed=9)
    for model_dir in (tiny_gpt_dir, other):  # another kind of model, or another model of its kind
        assert main(['predict', str(trained), '--model-dir', model_dir, '--text', '好']) == 2
        assert 'was trained on another base model' in _error(capsys, 'predict')


def test_a_config_with_fewer_layers_than_the_checkpoint_is_refused(tiny_bert_dir, data, tmp_path, capsys):
    liar = str(tmp_path / 'liar')
    shutil.copytree(tiny_bert_dir, liar)
    config = json.load(open(os.path.join(liar, 'config.json')))
    json.dump(dict(config, num_hidden_layers=1), open(os.path.join(liar, 'config.json'), 'w'))
    assert main(_train(liar, data, tmp_path / 'out')) == 2
    assert 'does not describe this checkpoint' in _error(capsys, 'train')
    assert not (tmp_path / 'out').exists()


def test_a_checkpoint_cut_short_is_one_line(tiny_bert_dir, data, tmp_path, capsys):
    cut = str(tmp_path / 'cut')
    shutil.copytree(tiny_bert_dir, cut)
    path = os.path.join(cut, 'bert_model.ckpt.data-00000-of-00001')
    data_bytes = open(path, 'rb').read()
    open(path, 'wb').write(data_bytes[:len(data_bytes) // 2])
    assert main(_train(cut, data, tmp_path / 'out')) == 2
    assert 'is damaged or incomplete' in _error(capsys, 'train')


def test_renamed_unused_tokens_are_not_prompt_tokens(tiny_bert_dir, data, tmp_path, capsys):
    odd = str(tmp_path / 'odd')
    shutil.copytree(tiny_bert_dir, odd)
    path = os.path.join(odd, 'vocab.txt')
    lines = open(path, encoding='utf-8').read().split('\n')
    lines[1:9] = ['[X%d]' % i for i in range(1, 9)]  # still bracketed, but not [unusedN]
    open(path, 'w', encoding='utf-8').write('\n'.join(lines))
    assert main(_train(odd, data, tmp_path / 'out')) == 2
    assert "prompt id 1 is '[X1]' in the vocabulary, not a reserved [unusedN] token" in _error(capsys, 'train')


def test_gbk_data_is_read_and_a_wrong_encoding_is_named(tiny_bert_dir, data, tmp_path, capsys, caplog):
    args = _train(tiny_bert_dir, data, tmp_path / 'out')
    args[args.index('--train') + 1] = args[args.index('--valid') + 1] = str(data / 'gbk.tsv')
    assert main(args) == 0
    assert 'gbk.tsv is not UTF-8; read as GB18030' in caplog.text
    capsys.readouterr()
    assert main(args[:-2] + ['--out', str(tmp_path / 'o2'), '--encoding', 'utf-8']) == 2
    line = _error(capsys, 'train')
    assert 'gbk.tsv:1: cannot be decoded as utf-8' in line and '--encoding' in line


def test_ctrl_c_saves_the_best_state_so_far_or_says_nothing_was_saved(tiny_bert_dir, data, tmp_path,
                                                                     capsys, monkeypatch):
    from ptuning_tf import training
    original = training.Evaluator.on_epoch_end

    def second_epoch_interrupted(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(training.Evaluator, 'on_epoch_end', second_epoch_interrupted)
    out = tmp_path / 'out'
    assert main(_train(tiny_bert_dir, data, out, '--epochs', '3')) == 130
    line = _error(capsys, 'train')
    assert 'interrupted: saved the best state so far (epoch' in line and str(out) in line
    metrics = json.load(open(str(out / 'metrics.json')))
    assert metrics['interrupted'] is True and metrics['best_epoch'] in (1, 2)

    def at_once(self, index):
        raise KeyboardInterrupt
    monkeypatch.setattr(training.PromptBatches, '__getitem__', at_once)
    assert main(_train(tiny_bert_dir, data, tmp_path / 'o2')) == 130
    assert 'interrupted: nothing saved' in _error(capsys, 'train')
    assert not (tmp_path / 'o2').exists()


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'ptuning_tf.cli'] + list(args), cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_help_and_argument_errors_do_not_load_tensorflow():
    code = ("import sys; from ptuning_tf.cli import main; "
            "codes = [main(['--help']), main(['train', '--epochs', '0'])]; "
            "print(codes, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip().splitlines()[-1] == '[0, 2] False'
    assert done.stderr.strip().splitlines() == [
        'ptuning-tf train: error: argument --epochs: must be at least 1, got 0']


def test_commands_print_no_tensorflow_start_up_lines_unless_verbose(tiny_bert_dir, tmp_path):
    quiet = _run('predict', str(tmp_path / 'none'), '--model-dir', tiny_bert_dir, '--text', '好')
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        'ptuning-tf predict: error: prompt file not found: %s' % (tmp_path / 'none')]
    loud = _run('predict', str(tmp_path / 'none'), '--model-dir', tiny_bert_dir, '--text', '好', '--verbose')
    assert loud.returncode == 2 and len(loud.stderr.strip().splitlines()) > 1
