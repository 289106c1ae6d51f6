"""The `ptuning-tf` commands behind the parser in cli.py.

Every failure a user can cause ends in one line, `ptuning-tf CMD: error: ...`, exit
code 2; Ctrl-C ends in one line saying what was saved, exit code 130. `train` writes
nothing until it has results, and then everything at once (saving.save).
"""
import contextlib
import json
import logging
import os
import sys
import time
from typing import List, Optional

from . import __version__

INTERRUPTED = 130
# method option -> its flag; which method has which option is the registry's (methods.py)
METHOD_FLAGS = {'prompt_encoder': '--prompt-encoder', 'prompt_length': '--prompt-length',
                'head': '--head', 'reparameterize': '--reparameterize',
                'prompt_init': '--prompt-init'}


class UsageError(Exception):
    """A problem with the command line itself (exit code 2, one line)."""


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines bypass Python."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_tensorflow(verbose: bool) -> None:
    if not verbose:
        os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    with quiet_stderr(not verbose):
        import tensorflow as tf
        import bert4keras.models  # noqa: F401  (its import prints too)
        tf.config.list_physical_devices()  # the device probe logs on first use


def _build_kwargs(args) -> dict:
    return dict(model_dir=args.model_dir, config_path=args.config,
                checkpoint_path=args.checkpoint, vocab_path=args.vocab, family=args.family)


def _load_checked(load, why_classes: str):
    """Run a data loader; a label beyond the classes gets the reason for the range."""
    from .data import DataError, LabelRangeError
    try:
        return load()
    except LabelRangeError as e:
        raise DataError('%s: %s' % (e, why_classes)) from e


def _train_splits(args, label_words: List[str]) -> dict:
    """train/valid/test for `train`: the user's files (--train first) or a --dataset."""
    from .data import load_dataset, load_split_files
    if not args.train:
        given = [f for f, v in (('--valid', args.valid), ('--test', args.test)) if v]
        if given:
            raise UsageError('%s needs --train (your own training file); without files, '
                             '--dataset gives all three splits' % ' and '.join(given))
        return load_dataset(args.dataset)
    why = ('--label-words gives %d words (%s), one per class: give one word for each label'
           % (len(label_words), ','.join(label_words)))
    return _load_checked(lambda: load_split_files(args.train, args.valid, args.test,
                                                  num_classes=len(label_words),
                                                  encoding=args.encoding), why)


def _labeled_frac(args) -> Optional[float]:
    """The fraction to sample: all of the user's own --train file, 1% of a built-in dataset
    (or, for a dataset sampled by class such as categories, its k a class: None)."""
    from .data import FEW_SHOT
    if args.k_per_class is not None:
        if args.labeled_frac is not None:
            raise UsageError('give --labeled-frac or --k-per-class, not both')
        return None
    if args.labeled_frac is None:
        if not args.train and args.dataset in FEW_SHOT:
            args.k_per_class = FEW_SHOT[args.dataset]['k']
            return None
        return 1.0 if args.train else 0.01
    return args.labeled_frac


def _label_words(args) -> List[str]:
    from .data import label_words_of
    if args.label_words is not None:
        return args.label_words.split(',')
    return list(label_words_of(None if args.train else args.dataset))


def _method(args):
    """The registry's method with the options given on the command line, checked."""
    from dataclasses import fields
    from .methods import METHODS, make_method
    options = {m: {f.name for f in fields(c)} for m, c in METHODS.items()}
    given = {name: getattr(args, name) for name in METHOD_FLAGS if getattr(args, name) is not None}
    foreign = [n for n in given if n not in options[args.method]]
    if foreign:
        owners = ['%s is for %s' % (METHOD_FLAGS[n], ', '.join(m for m in options if n in options[m]))
                  for n in foreign]
        raise UsageError('--method %s has no option %s (%s)'
                         % (args.method, ', '.join(METHOD_FLAGS[n] for n in foreign), '; '.join(owners)))
    try:
        return make_method(args.method, **given)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _check_out(out: str, overwrite: bool) -> None:
    """--out must not hold results (unless --overwrite) and must be creatable; nothing is made."""
    if os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)):
        if not os.path.isdir(out):
            raise UsageError('--out %s is a file, not a directory' % out)
        if not overwrite:
            raise UsageError('--out %s already holds results (%s); add --overwrite to replace them'
                             % (out, ', '.join(sorted(os.listdir(out))[:4])))
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError('--out %s cannot be created: %s is not a writable directory' % (out, parent))


def _metrics(args, clf, result: dict, labeled: list, frac: Optional[float]) -> dict:
    from .saving import base_record
    options = {k: v for k, v in vars(args).items() if k not in ('command', 'verbose')}
    return {'valid_acc': result.get('valid_acc'), 'test_acc': result.get('test_acc'),
            'best_epoch': result.get('epoch'), 'labeled': len(labeled),
            'labeled_frac': frac, 'k_per_class': args.k_per_class, 'seed': args.seed,
            'sample_seed': args.sample_seed, 'seconds': round(result.get('seconds', 0.0), 1),
            'kind': clf.kind.name, 'method': clf.method.to_config(),
            'learning_rate': args.lr if args.lr is not None else clf.method.learning_rate,
            'classes': clf.template.num_labels, 'template': clf.template.config(),
            'base': base_record(clf.spec), 'saved': os.path.abspath(args.out),
            'version': __version__, 'options': options, 'history': result.get('history', [])}


def cmd_train(args) -> dict:
    from .classifier import PromptClassifier
    from .data import few_shot
    from .saving import save
    from .training import TrainingInterrupted
    method = _method(args)
    label_words = _label_words(args)
    if len(label_words) < 2:
        raise UsageError('--label-words needs at least two words, one per class')
    frac = _labeled_frac(args)
    _check_out(args.out, args.overwrite)
    splits = _train_splits(args, label_words)  # bad data fails before anything is written
    labeled = few_shot(splits['train'], frac, args.k_per_class, args.sample_seed)
    try:
        clf = PromptClassifier.build(kind=args.kind, method=method, pattern=args.pattern,
                                     label_words=label_words, maxlen=args.maxlen,
                                     aux_loss=not args.no_aux_loss,
                                     whole_word_mask=args.whole_word_mask, **_build_kwargs(args))
    except ValueError as e:
        if type(e) is ValueError:  # the library's own errors (templates, checkpoints) pass on
            raise UsageError(str(e)) from e
        raise
    try:
        result = clf.fit(labeled, splits['valid'] or None, splits['test'] or None, epochs=args.epochs,
                         batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         patience=args.patience, steps_per_epoch=args.steps_per_epoch,
                         verbose=1 if sys.stderr.isatty() else 2, log=print)
    except TrainingInterrupted as stop:
        if not stop.best:
            raise
        metrics = dict(_metrics(args, clf, stop.best, labeled, frac), interrupted=True)
        save(clf, args.out, {'metrics.json': json.dumps(metrics, indent=2, ensure_ascii=False)})
        stop.saved = 'saved the best state so far (epoch %d, valid_acc %.4f) to %s' % (
            stop.best['epoch'], stop.best['valid_acc'], args.out)
        raise
    metrics = _metrics(args, clf, result, labeled, frac)
    save(clf, args.out, {'metrics.json': json.dumps(metrics, indent=2, ensure_ascii=False)})
    print(json.dumps({k: v for k, v in metrics.items() if k not in ('history', 'options', 'template')},
                     ensure_ascii=False))
    return metrics


def _load_classifier(args):
    from .saving import load
    return load(args.prompt, **_build_kwargs(args))


def cmd_eval(args) -> dict:
    from .data import load_dataset, load_split_files
    if args.test and args.split != 'test':
        raise UsageError('--split %s: with --test FILE the file is the only split (test); '
                         'drop --split, or use --dataset for its %s split' % (args.split, args.split))
    clf = _load_classifier(args)
    words = clf.template.label_words
    if args.test:
        why = 'the classifier has %d label words (%s), one per class' % (len(words), ','.join(words))
        examples = _load_checked(lambda: load_split_files(
            None, None, args.test, num_classes=len(words), encoding=args.encoding)['test'], why)
    else:
        examples = load_dataset(args.dataset)[args.split]
    if not examples:
        raise UsageError('the %s split of --dataset %s is empty' % (args.split, args.dataset))
    result = {'split': args.split, 'examples': len(examples), 'accuracy': clf.evaluate(examples)}
    print(json.dumps(result))
    return result


def _predict_texts(args) -> List[str]:
    for i, text in enumerate(args.texts, 1):
        if not text.strip():
            raise UsageError('--text number %d is empty: give a text to classify' % i)
    if args.texts:
        return list(args.texts)
    if args.input:
        try:
            with open(args.input, encoding='utf-8') as f:
                return [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise UsageError('cannot read --input %s: %s' % (args.input, e.strerror)) from e
        except UnicodeDecodeError as e:
            raise UsageError('--input %s is not UTF-8 text (%s)' % (args.input, e.reason)) from e
    return [line.strip() for line in sys.stdin if line.strip()]


def cmd_predict(args) -> List[dict]:
    texts = _predict_texts(args)
    if not texts:
        raise UsageError('no texts given (use --text, --input or stdin)')
    clf = _load_classifier(args)
    labels, probs = clf.predict(texts)
    rows = [{'text': t, 'label': int(y), 'probs': [round(float(p), 4) for p in ps]}
            for t, y, ps in zip(texts, labels, probs)]
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return rows


def cmd_pretrain(args) -> dict:
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from .pretrain import PretrainConfig, run_pretraining
    try:
        config = PretrainConfig(
            kind=args.kind, model=args.model, hidden_size=args.hidden_size,
            num_hidden_layers=args.layers, num_attention_heads=args.heads,
            intermediate_size=args.intermediate_size, seq_len=args.seq_len, batch_size=args.batch_size,
            learning_rate=args.lr, warmup_steps=args.warmup_steps, total_steps=args.total_steps,
            decay_steps=args.decay_steps, seed=args.seed, mask_rate=args.mask_rate,
            position_init=args.position_init)
    except ValueError as e:
        raise UsageError(str(e)) from e
    t0 = time.time()
    metrics = run_pretraining(config, args.work_dir, args.out, args.max_seconds, args.max_steps,
                              init_from=args.init_from, vocab_path=args.vocab, corpus_path=args.corpus,
                              eval_every=args.eval_every, snapshot_dir=args.snapshots,
                              resume_from=args.resume_from, log=lambda m: print(m, flush=True))
    print(json.dumps(dict(metrics, seconds=round(time.time() - t0, 1))))
    return metrics


COMMANDS = {'train': cmd_train, 'eval': cmd_eval, 'predict': cmd_predict, 'pretrain': cmd_pretrain}


def run(args) -> int:
    """Run a parsed command; every expected failure is one line on stderr."""
    _start_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    from .checkpoint import CheckpointError
    from .data import DataError
    from .saving import PromptFileError
    from .templates import TemplateError
    from .training import TrainingInterrupted
    prefix = 'ptuning-tf %s' % args.command
    try:
        COMMANDS[args.command](args)
    except (CheckpointError, DataError, PromptFileError, TemplateError, UsageError) as e:
        print('%s: error: %s' % (prefix, e), file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        print('%s: interrupted: %s' % (prefix, stop.saved or 'nothing saved (no epoch was evaluated '
                                                             'yet)'), file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print('%s: interrupted: nothing saved' % prefix, file=sys.stderr)
        return INTERRUPTED
    return 0
