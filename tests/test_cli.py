"""`ptuning-tf` train/eval/predict on a tiny model: outputs, --help, one-line errors, exit code 2."""
import io
import json
import os

import numpy as np
import pytest

from ptuning_tf import load
from ptuning_tf.cli import build_parser, main
from ptuning_tf import PromptClassifier

POS = ['这个东西很好', '质量好价格便宜', '服务很好，推荐', '很喜欢，还会再买', '送货快，满意']
NEG = ['太差了', '质量不好，失望', '不会再买了', '价格贵，东西差', '服务太差，不满意']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    lines = ['%s\t1' % t for t in POS] + ['%s\t0' % t for t in NEG]
    for name in ('train', 'valid', 'test'):
        (d / ('%s.tsv' % name)).write_text('\n'.join(lines) + '\n', encoding='utf-8')
    (d / 'test.csv').write_text('label,review\n' + '\n'.join('1,' + t for t in POS[:3]) + '\n',
                                encoding='utf-8')
    return d


@pytest.fixture(scope='module')
def trained(data_dir, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('out')
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--valid', str(data_dir / 'valid.tsv'), '--test', str(data_dir / 'test.tsv'),
                 '--labeled-frac', '1', '--epochs', '2', '--batch-size', '4', '--maxlen', '32',
                 '--lr', '0.05', '--seed', '3', '--out', str(out)])
    assert code == 0
    return out


def _one_line_error(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith('ptuning-tf %s: error: ' % command)
    return err[0]


def _last_json(capsys, n=1):
    lines = capsys.readouterr().out.strip().splitlines()[-n:]
    return [json.loads(line) for line in lines]


def test_train_writes_prompt_and_metrics(trained):
    assert sorted(os.listdir(str(trained))) == ['classifier.json', 'metrics.json', 'prompt.npz']
    metrics = json.load(open(os.path.join(str(trained), 'metrics.json')))
    assert metrics['labeled'] == 10 and metrics['seed'] == 3 and metrics['sample_seed'] is None
    assert 0 <= metrics['valid_acc'] <= 1 and 0 <= metrics['test_acc'] <= 1
    assert isinstance(metrics['seconds'], float) and metrics['seconds'] >= 0
    assert metrics['kind'] == 'mlm' and metrics['method'] == {'name': 'ptuning', 'prompt_encoder': 'none', 'prompt_init': ''}
    assert metrics['best_epoch'] in (1, 2)
    assert [h['epoch'] for h in metrics['history']] == [1, 2]
    best = metrics['history'][metrics['best_epoch'] - 1]
    assert (best['valid_acc'], best['test_acc']) == (metrics['valid_acc'], metrics['test_acc'])
    assert os.path.getsize(os.path.join(str(trained), 'prompt.npz')) < 8 * 1024


def test_eval_and_predict(trained, data_dir, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    prompt = os.path.join(str(trained), 'prompt.npz')
    metrics = json.load(open(os.path.join(str(trained), 'metrics.json')))
    capsys.readouterr()
    assert main(['eval', prompt, '--model-dir', tiny_bert_dir, '--test', str(data_dir / 'test.tsv')]) == 0
    [result] = _last_json(capsys)
    # the same prompt on the same test file: the accuracy the training run reported
    assert result == {'split': 'test', 'examples': 10, 'accuracy': metrics['test_acc']}
    assert main(['eval', prompt, '--model-dir', tiny_bert_dir, '--test', str(data_dir / 'test.csv')]) == 0
    assert _last_json(capsys)[0]['examples'] == 3

    clf = load(prompt, tiny_bert_dir)
    expected = clf.predict_proba(['很好', '太差'])
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir, '--text', '很好', '--text', '太差']) == 0
    rows = _last_json(capsys, 2)
    assert [r['text'] for r in rows] == ['很好', '太差']
    assert [r['label'] for r in rows] == expected.argmax(-1).tolist()
    np.testing.assert_allclose([r['probs'] for r in rows], expected, atol=1e-4)
    # one text per line from --input (blank lines skipped) or from stdin
    texts = tmp_path / 'texts.txt'
    texts.write_text('很好\n\n太差\n', encoding='utf-8')
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir, '--input', str(texts)]) == 0
    assert _last_json(capsys, 2) == rows
    monkeypatch.setattr('sys.stdin', io.StringIO('很好\n太差\n'))
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir]) == 0
    assert _last_json(capsys, 2) == rows


def test_gpt_train_with_k_per_class(data_dir, tiny_gpt_dir, tmp_path, capsys):
    out = tmp_path / 'gpt'
    assert main(['train', '--kind', 'gpt', '--model-dir', tiny_gpt_dir, '--train', str(data_dir / 'train.tsv'),
                 '--valid', str(data_dir / 'valid.tsv'), '--k-per-class', '2', '--sample-seed', '1',
                 '--epochs', '1', '--maxlen', '24', '--out', str(out)]) == 0
    printed = _last_json(capsys)[0]
    metrics = json.load(open(str(out / 'metrics.json')))
    assert printed == {k: v for k, v in metrics.items() if k not in ('history', 'options', 'template')}
    assert metrics['labeled'] == 4 and metrics['sample_seed'] == 1 and metrics['kind'] == 'lm'
    assert metrics['test_acc'] is None  # no test file given
    assert load(str(out / 'prompt.npz'), tiny_gpt_dir).kind.name == 'lm'


@pytest.mark.parametrize('command', ['train', 'eval', 'predict', 'pretrain'])
def test_help_documents_every_option(command, capsys):
    assert main([command, '--help']) == 0
    text = capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    options = [a for a in sub._actions if a.option_strings and a.dest != 'help']
    assert len(options) >= 3
    for action in options:
        for flag in action.option_strings:
            assert flag in text, '%s --help does not mention %s' % (command, flag)
        assert action.help, '%s %s has no help text' % (command, action.option_strings)
    for action in sub._actions:
        if not action.option_strings:  # positionals (the prompt file)
            assert action.dest in text


def test_missing_data_file_is_a_one_line_error(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / 'out'
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(tmp_path / 'nope.tsv'),
                 '--out', str(out)])
    assert code == 2
    assert 'nope.tsv' in _one_line_error(capsys, 'train')
    assert not out.exists()  # the data is checked before anything is written


def test_malformed_data_line_names_file_and_line(tiny_bert_dir, tmp_path, capsys):
    bad = tmp_path / 'bad.tsv'
    bad.write_text('很好\t1\n没有标签\n', encoding='utf-8')
    assert main(['train', '--model-dir', tiny_bert_dir, '--train', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert '%s:2:' % bad in _one_line_error(capsys, 'train')
    assert not (tmp_path / 'o').exists()


def test_unwritable_output_directory(tiny_bert_dir, data_dir, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--out', str(blocker / 'out')])
    assert code == 2 and 'is not a writable directory' in _one_line_error(capsys, 'train')
    assert blocker.read_text() == 'x' and os.listdir(str(tmp_path)) == ['file']


def test_interrupted_training_writes_nothing(tiny_bert_dir, data_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(PromptClassifier, 'fit', interrupted)
    out = tmp_path / 'out'
    assert main(['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--maxlen', '32', '--out', str(out)]) == 130
    assert capsys.readouterr().err.strip() == 'ptuning-tf train: interrupted: nothing saved'
    assert not out.exists()


@pytest.mark.parametrize('extra, message', [
    (['--label-words', '不,龘龘'], "label word '龘龘' is not in the vocabulary"),
    (['--labeled-frac', '0'], 'argument --labeled-frac: must be in (0, 1], got 0'),
    (['--labeled-frac', '1.5'], 'argument --labeled-frac: must be in (0, 1], got 1.5'),
    (['--k-per-class', '0'], 'argument --k-per-class: must be at least 1, got 0'),
    (['--maxlen', '500'], 'max_position_embeddings'),
    (['--prompt-length', '5'], '--method ptuning has no option --prompt-length (--prompt-length is '
                               'for ptuning_v2)'),
    (['--method', 'finetune', '--prompt-encoder', 'mlp'], '--prompt-encoder is for ptuning'),
])
def test_bad_options_exit_2(tiny_bert_dir, data_dir, tmp_path, capsys, extra, message):
    out = tmp_path / 'o'
    args = ['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
            '--out', str(out), '--maxlen', '32']
    assert main(args + extra) == 2
    assert message in _one_line_error(capsys, 'train')
    assert not out.exists() or os.listdir(str(out)) == []


def test_bad_model_dir_exit_2(data_dir, tmp_path, capsys):
    assert main(['train', '--train', str(data_dir / 'train.tsv'), '--out', str(tmp_path / 'o'),
                 '--model-dir', str(tmp_path / 'none')]) == 2
    assert 'model directory not found' in _one_line_error(capsys, 'train')


def test_eval_and_predict_bad_input_exit_2(trained, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    prompt = os.path.join(str(trained), 'prompt.npz')
    assert main(['eval', str(tmp_path / 'none.npz'), '--model-dir', tiny_bert_dir,
                 '--test', str(tmp_path / 'x.tsv')]) == 2
    assert 'not found' in _one_line_error(capsys, 'eval')
    assert main(['eval', prompt, '--model-dir', tiny_bert_dir, '--test', str(tmp_path / 'x.tsv')]) == 2
    assert 'x.tsv' in _one_line_error(capsys, 'eval')
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir, '--input', str(tmp_path / 'in.txt')]) == 2
    assert 'cannot read --input' in _one_line_error(capsys, 'predict')
    monkeypatch.setattr('sys.stdin', io.StringIO('\n  \n'))
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir]) == 2
    assert 'no texts given' in _one_line_error(capsys, 'predict')
    assert main(['predict', str(tmp_path / 'none.npz'), '--model-dir', tiny_bert_dir, '--text', '好']) == 2
    assert 'prompt file not found' in _one_line_error(capsys, 'predict')


def test_usage_errors_from_argparse_exit_2(capsys):
    assert main(['train', '--kind', 't5']) == 2
    assert "argument --kind: invalid choice: 't5'" in _one_line_error(capsys, 'train')
    assert main([]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        'ptuning-tf: error: the following arguments are required: command']


@pytest.mark.parametrize('files', [['--test'], ['--valid'], ['--valid', '--test']])
def test_test_or_valid_without_train_is_a_usage_error(data_dir, tmp_path, capsys, files):
    # it used to train on the --test file
    args = ['train', '--out', str(tmp_path / 'o')]
    for flag in files:
        args += [flag, str(data_dir / ('%s.tsv' % flag[2:]))]
    assert main(args) == 2
    assert '%s needs --train' % ' and '.join(files) in _one_line_error(capsys, 'train')
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('split', ['valid', 'train'])
def test_eval_other_split_of_an_own_test_file_is_a_usage_error(trained, data_dir, tiny_bert_dir, capsys, split):
    prompt = os.path.join(str(trained), 'prompt.npz')
    assert main(['eval', prompt, '--model-dir', tiny_bert_dir, '--test', str(data_dir / 'test.tsv'),
                 '--split', split]) == 2  # was a KeyError traceback
    assert '--split %s: with --test FILE the file is the only split' % split in _one_line_error(capsys, 'eval')


@pytest.mark.parametrize('given, train, expected', [
    ([], False, 0.01), ([], True, 1.0), (['--labeled-frac', '0.5'], True, 0.5),
    (['--labeled-frac', '0.2'], False, 0.2), (['--k-per-class', '3'], True, None)])
def test_labeled_frac_default_depends_on_the_data(given, train, expected):
    from ptuning_tf.commands import _labeled_frac
    args = build_parser().parse_args(['train'] + given + (['--train', 'x.tsv'] if train else []))
    assert _labeled_frac(args) == expected


def test_labeled_frac_with_k_per_class_is_a_usage_error(data_dir, tmp_path, capsys):
    assert main(['train', '--train', str(data_dir / 'train.tsv'), '--labeled-frac', '0.5',
                 '--k-per-class', '2', '--out', str(tmp_path / 'o')]) == 2
    assert 'give --labeled-frac or --k-per-class, not both' in _one_line_error(capsys, 'train')


@pytest.fixture(scope='module')
def three_class(tmp_path_factory):
    d = tmp_path_factory.mktemp('three')
    lines = ['%s\t2' % t for t in POS] + ['%s\t0' % t for t in NEG] + ['还可以\t1', '一般\t1']
    (d / 'train.tsv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return d / 'train.tsv'


def test_label_words_set_the_number_of_classes(three_class, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / 'o'
    assert main(['train', '--model-dir', tiny_bert_dir, '--train', str(three_class), '--valid', str(three_class),
                 '--test', str(three_class), '--label-words', '差,还,好', '--epochs', '1', '--maxlen', '32',
                 '--out', str(out)]) == 0
    metrics = json.load(open(str(out / 'metrics.json')))
    # no --labeled-frac with an own --train file: all 12 examples are labelled
    assert metrics['classes'] == 3 and metrics['labeled'] == 12 and metrics['labeled_frac'] == 1.0
    capsys.readouterr()
    assert main(['eval', str(out), '--model-dir', tiny_bert_dir, '--test', str(three_class)]) == 0
    assert _last_json(capsys)[0] == {'split': 'test', 'examples': 12, 'accuracy': metrics['test_acc']}
    assert main(['predict', str(out / 'prompt.npz'), '--model-dir', tiny_bert_dir, '--text', '一般']) == 0
    assert len(_last_json(capsys)[0]['probs']) == 3


def test_labels_beyond_the_label_words_are_a_clear_error(three_class, tiny_bert_dir, trained, tmp_path, capsys):
    assert main(['train', '--model-dir', tiny_bert_dir, '--train', str(three_class), '--out', str(tmp_path / 'o')]) == 2
    message = _one_line_error(capsys, 'train')
    assert '%s:1: label 2 outside the classes 0..1' % three_class in message
    assert '--label-words gives 2 words (不,很), one per class' in message
    assert not (tmp_path / 'o').exists()
    assert main(['eval', str(trained), '--model-dir', tiny_bert_dir, '--test', str(three_class)]) == 2
    assert 'the classifier has 2 label words (不,很)' in _one_line_error(capsys, 'eval')
    assert main(['train', '--label-words', '好', '--out', str(tmp_path / 'o')]) == 2
    assert '--label-words needs at least two words' in _one_line_error(capsys, 'train')


def test_finetune_saves_the_model_for_eval_and_predict(data_dir, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    after_training, fit = {}, PromptClassifier.fit

    def recording_fit(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        after_training['probs'] = self.predict_proba(['很好', '太差'])
        return result
    monkeypatch.setattr(PromptClassifier, 'fit', recording_fit)
    out = tmp_path / 'ft'
    assert main(['train', '--method', 'finetune', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--valid', str(data_dir / 'valid.tsv'), '--test', str(data_dir / 'test.tsv'), '--epochs', '2',
                 '--batch-size', '4', '--lr', '0.01', '--maxlen', '32', '--out', str(out)]) == 0
    metrics = json.load(open(str(out / 'metrics.json')))
    assert sorted(os.listdir(str(out))) == ['classifier.json', 'metrics.json', 'model']
    assert metrics['method'] == {'name': 'finetune'}
    capsys.readouterr()
    # no base model options: the directory holds the fine-tuned weights
    assert main(['eval', str(out), '--test', str(data_dir / 'test.tsv')]) == 0
    assert _last_json(capsys)[0] == {'split': 'test', 'examples': 10, 'accuracy': metrics['test_acc']}
    expected = load(str(out)).predict_proba(['很好', '太差'])
    np.testing.assert_allclose(expected, after_training['probs'], atol=1e-6, rtol=0)
    for path in (str(out), ):
        assert main(['predict', path, '--text', '很好', '--text', '太差']) == 0
        np.testing.assert_allclose([r['probs'] for r in _last_json(capsys, 2)], expected, atol=1e-4)
    assert main(['predict', str(out), '--model-dir', tiny_bert_dir, '--text', '很好']) == 2
    assert 'drop --model-dir' in _one_line_error(capsys, 'predict')
