"""Progress bars that degrade to nothing when tqdm is missing or output is not a terminal."""
import sys


def progress_bar(iterable=None, total=None, desc=None, disable=None):
    """A tqdm bar; quiet in CI logs unless the output is a terminal."""
    from tqdm.auto import tqdm
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, mininterval=2.0,
                dynamic_ncols=True)
