"""The shape of the code: no import circle, small modules, string dispatch only in the registries,
examples over the public API."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, 'ptuning_tf')
MAX_MODULE_LINES = 350
MAX_EXAMPLE_LINES = 80
REGISTRIES = {'kinds.py', 'methods.py', 'families.py', 'heads.py'}


def _modules():
    return sorted(f for f in os.listdir(PACKAGE) if f.endswith('.py'))


def _tree(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), path)


def _local_imports(name):
    """Modules of the package that `name` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(_tree(os.path.join(PACKAGE, name))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split('.')[0] + '.py')
            else:  # `from . import x`
                found.update(a.name + '.py' for a in node.names)
    return {m for m in found if os.path.exists(os.path.join(PACKAGE, m))} - {'__init__.py'}


def test_the_package_has_no_import_circle():
    graph = {m: _local_imports(m) for m in _modules() if m != '__init__.py'}
    visiting, done = set(), set()

    def visit(module, path):
        if module in done:
            return
        assert module not in visiting, 'import circle: %s' % ' -> '.join(path + [module])
        visiting.add(module)
        for other in graph.get(module, ()):
            visit(other, path + [module])
        visiting.discard(module)
        done.add(module)
    for module in graph:
        visit(module, [])
    assert graph['classifier.py'] and 'classifier.py' not in graph['methods.py']  # the walk sees edges


@pytest.mark.parametrize('name', _modules())
def test_modules_stay_small(name):
    with open(os.path.join(PACKAGE, name), encoding='utf-8') as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_MODULE_LINES, '%s has %d lines' % (name, lines)


def _string_dispatch(tree):
    """`x.kind == '...'`, `method != '...'` and the like: an axis name compared with a string.

    (bert4keras' own `mode='dense'` of the embedding call is not one of the three axes.)
    """
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops) \
                and any(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in node.comparators):
            left = node.left
            name = left.attr if isinstance(left, ast.Attribute) else getattr(left, 'id', '')
            if name in ('kind', 'method', 'head', 'family', 'model', 'prompt_encoder'):
                hits.append('%s (line %d)' % (ast.unparse(node), node.lineno))
    return hits


@pytest.mark.parametrize('name', [m for m in _modules() if m not in REGISTRIES])
def test_no_string_dispatch_outside_the_registries(name):
    assert _string_dispatch(_tree(os.path.join(PACKAGE, name))) == []


def test_the_dispatch_check_can_fail():
    assert _string_dispatch(ast.parse("if self.config.kind == 'gpt': pass"))


@pytest.mark.parametrize('name', sorted(os.listdir(os.path.join(REPO, 'examples'))))
def test_examples_are_short_scripts_over_the_public_api(name):
    import ptuning_tf
    path = os.path.join(REPO, 'examples', name)
    with open(path, encoding='utf-8') as f:
        assert sum(1 for _ in f) <= MAX_EXAMPLE_LINES
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('ptuning_tf'):
            assert node.module == 'ptuning_tf', 'examples import the package, not %s' % node.module
            assert {a.name for a in node.names} <= set(ptuning_tf.__all__)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith('ptuning_tf.') for a in node.names)
