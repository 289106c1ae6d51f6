"""`benchmarks/run.py --quick` produces every row of the table (tiny models, seconds per row)."""
import json
import os
import sys

import pytest

from ptuning_tf.data import DataError, shared_dir

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')


@pytest.fixture
def report(tmp_path, monkeypatch):
    """benchmarks/report.py writing into tmp_path instead of the repository."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import report
    finally:
        sys.path.remove(BENCHMARKS)
    monkeypatch.setattr(report, 'RESULTS', str(tmp_path / 'results.json'))
    monkeypatch.setattr(report, 'MARKDOWN', str(tmp_path / 'BENCHMARKS.md'))
    return report


RECORD_KEYS = {'method', 'model', 'dataset', 'labeled_frac', 'seeds', 'valid_mean', 'valid_std',
               'test_mean', 'test_std'}


def test_quick_benchmark_produces_every_row(tiny_bert_dir, tiny_gpt_dir, tmp_path):
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')
    sys.path.insert(0, BENCHMARKS)
    try:
        import accuracy
        import run
        run.main(['--quick', '--eval-limit', '48', '--bert-dir', tiny_bert_dir,
                  '--gpt-dir', tiny_gpt_dir, '--output-dir', str(tmp_path)])
    finally:
        sys.path.remove(BENCHMARKS)
    results = json.load(open(str(tmp_path / 'results.json'), encoding='utf-8'))['sections']
    assert set(results) == {'reference', 'fractions', 'snownlp', 'cross_domain', 'speed'}
    for name, section in results.items():
        assert section['command'].startswith('python ') and section['machine'] and section['date']
        for record in section['records']:
            assert RECORD_KEYS <= set(record) if name != 'speed' else {'metric', 'value', 'unit'} <= set(record)
    methods = {r['method'] for r in results['reference']['records']}
    assert methods == set(accuracy.METHODS)
    protocols = {r['protocol'] for r in results['reference']['records'] if r['method'] == 'bert_ptuning'}
    assert len(protocols) == 2  # random 1% per seed, and the first 1% of the file
    assert {r['dataset'] for r in results['cross_domain']['records']} == {'chnsenticorp', 'waimai'}
    metrics = {r['metric'] for r in results['speed']['records']}
    for metric in ('train_step_ratio_ptuning_vs_finetune', 'predict_throughput_batch1',
                   'predict_throughput_batch64', 'prompt_artifact_size', 'trainable_parameters_ptuning',
                   'train_steps_per_second_ptuning_two_workers',
                   'train_step_ratio_ptuning_v2_20_linear_vs_finetune'):
        assert metric in metrics
    markdown = open(str(tmp_path / 'BENCHMARKS.md'), encoding='utf-8').read()
    assert 'BERT + P-tuning' in markdown and os.path.exists(str(tmp_path / 'fractions.png'))


def test_learning_curve_keeps_points_of_other_runs(tiny_bert_dir, report, tmp_path):
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')
    import shutil
    snapshots, run_dir = tmp_path / 'snapshots', tmp_path / 'run'
    for step in (1, 2):
        shutil.copytree(tiny_bert_dir, str(snapshots / ('step_%d' % step)))
    run_dir.mkdir()
    (run_dir / 'log.jsonl').write_text(''.join(
        json.dumps({'step': s, 'tokens_seen': 100 * s, 'heldout_mlm_acc': 0.1 * s}) + '\n'
        for s in (1, 2)))
    sys.path.insert(0, BENCHMARKS)
    try:
        import learning_curve
        common = ['--kind', 'mlm', '--run-dir', str(run_dir), '--snapshots', str(snapshots),
                  '--seeds', '0', '--epochs', '1', '--steps-per-epoch', '1',
                  '--methods', 'pet_zero_shot', '--eval-limit', '16']
        learning_curve.main(common + ['--run-name', 'a'])
        learning_curve.main(common + ['--run-name', 'b', '--steps', '2'])
    finally:
        sys.path.remove(BENCHMARKS)
    records = json.load(open(str(tmp_path / 'results.json')))['sections']['pretraining_curve']['records']
    assert sorted((r['run'], r['step']) for r in records) == [('a', 1), ('a', 2), ('b', 2)]
    assert {r['step']: r['tokens_seen'] for r in records} == {1: 100, 2: 200}
    assert os.path.exists(str(tmp_path / 'pretraining_curve.png'))


def test_report_keeps_rows_of_other_runs_with_their_command(report, tmp_path, monkeypatch):
    row = dict(model='m', dataset='d', labeled_frac=0.01, seeds=[0], valid_mean=0.5,
               valid_std=0.0, test_mean=0.5, test_std=0.0)
    monkeypatch.setattr(sys, 'argv', ['benchmarks/run.py', '--methods', 'a,b'])
    report.update('reference', [dict(row, method='a'), dict(row, method='b')], 1.0)
    monkeypatch.setattr(sys, 'argv', ['benchmarks/run.py', '--methods', 'b'])
    report.update('reference', [dict(row, method='b', test_mean=0.9)], 1.0,
                  keep=lambda r: r['method'] != 'b')
    records = json.load(open(str(tmp_path / 'results.json')))['sections']['reference']['records']
    assert [(r['method'], r['test_mean'], r['command']) for r in records] == [
        ('a', 0.5, 'python benchmarks/run.py --methods a,b'),
        ('b', 0.9, 'python benchmarks/run.py --methods b')]
    markdown = open(str(tmp_path / 'BENCHMARKS.md'), encoding='utf-8').read()
    assert '- a: `python benchmarks/run.py --methods a,b`' in markdown


def test_targets_say_which_are_met_and_by_how_much_not(report):
    row = lambda m, test, protocol='random 0.01 per seed': {  # noqa: E731
        'method': m, 'test_mean': test, 'protocol': protocol}
    data = {'sections': {
        'reference': {'records': [row('bert_ptuning', 0.80), row('bert_ptuning', 0.10, 'first 0.01 of the file'),
                                  row('finetune', 0.78), row('pet_zero_shot', 0.77), row('gpt_ptuning', 0.70)]},
        'speed': {'records': [{'metric': 'train_step_ratio_ptuning_vs_finetune', 'value': 0.6}]}}}
    lines = '\n'.join(report.targets(data))
    assert '| BERT + P-tuning >= few-shot fine-tune (test) | +2.00 points | met |' in lines
    assert 'PET zero-shot + 5 points | +3.00 points | missed by 2.00 points |' in lines
    assert 'missed by 8.00 points (GPT lower)' in lines
    assert '| 0.600 | met |' in lines
    assert report.WHY_ACCURACY_MISSED in lines  # a missed accuracy target says what was tried
    met = {'sections': {'reference': {'records': [row('bert_ptuning', 0.9), row('finetune', 0.8)]}}}
    assert report.WHY_ACCURACY_MISSED not in '\n'.join(report.targets(met))
    assert report.targets({'sections': {}}) == []


def test_whole_valid_accuracy_rescoring_only_the_unscored_texts(tiny_bert_dir, tiny_examples):
    sys.path.insert(0, BENCHMARKS)
    try:
        from accuracy import whole_valid_accuracy
    finally:
        sys.path.remove(BENCHMARKS)
    from ptuning_tf import PromptClassifier
    clf = PromptClassifier.build(tiny_bert_dir, maxlen=32)
    valid = list(tiny_examples) * 2
    for scored in (0, 3, len(valid)):
        assert whole_valid_accuracy(clf, valid, scored, clf.evaluate(valid[:scored]) if scored else 0.0) \
            == pytest.approx(clf.evaluate(valid), abs=1e-9)


def test_lr_search_runs_first_and_the_runs_needing_no_lr_queue_behind_it(tmp_path, monkeypatch):
    """No worker waits for the lr search: everything that does not need its answer is queued."""
    from concurrent.futures import Future
    sys.path.insert(0, BENCHMARKS)
    try:
        import run
    finally:
        sys.path.remove(BENCHMARKS)
    submitted = []

    class RecordingPool:
        def __init__(self, workers):
            self.futures = {}

        def submit(self, job):
            if job not in self.futures:
                submitted.append(job)
                self.futures[job] = Future()
                self.futures[job].set_result({'valid': job.lr or 0.5, 'test': 0.5, 'epoch': 1, 'seconds': 0})
            return self.futures[job]

        def result(self, job, log=print):
            return self.submit(job).result()

        def close(self):
            pass

    monkeypatch.setattr(run, 'Pool', RecordingPool)
    run.main(['--only', 'reference', '--only', 'snownlp', '--output-dir', str(tmp_path),
              '--lr-candidates', '1e-5,1e-4', '--seeds', '0,1', '--patience', '3'])
    kinds = ['lr' if i < 2 else 'finetune' if run.is_finetune(job.method) else 'no lr'
             for i, job in enumerate(submitted)]
    # the lr search, then every run that needs no lr, then the fine-tune runs at the chosen lr
    assert kinds.count('no lr') and kinds.count('finetune')
    assert kinds == ['lr'] * 2 + ['no lr'] * kinds.count('no lr') + ['finetune'] * kinds.count('finetune')
    assert [job.lr for job in submitted[:2]] == [1e-5, 1e-4]
    assert {job.lr for job in submitted[2 + kinds.count('no lr'):]} == {1e-4}
    assert {job.patience for job in submitted} == {3}
    submitted.clear()  # rows without fine-tuning: no lr search at all
    run.main(['--only', 'reference', '--methods', 'bert_ptuning', '--output-dir', str(tmp_path),
              '--lr-candidates', '1e-5,1e-4', '--seeds', '0,1'])
    assert submitted and not any(run.is_finetune(job.method) for job in submitted)


def test_full_run_time_is_recorded_and_checked_against_the_budget(report, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['benchmarks/run.py'])
    report.record_full_run(80 * 60, 4 * 60)
    markdown = open(str(tmp_path / 'BENCHMARKS.md'), encoding='utf-8').read()
    assert '| full table (every section) <= 90 min on 2 cores | 84.0 min | met |' in markdown
    assert '`python benchmarks/run.py` (every section) took 84.0 min' in markdown
    report.record_full_run(88 * 60, 4 * 60)
    data = json.load(open(str(tmp_path / 'results.json')))
    assert data['full_run']['seconds'] == 92 * 60
    assert 'missed by 2.0 min' in '\n'.join(report.targets(data))
