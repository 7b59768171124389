"""Granian's target resolution (granian/_internal.py), embedded in granc by
py.c: it drives Python's import machinery, so it is Python.
"""
import importlib, os, sys
def load(target, factory, wd):
    sys.path.insert(0, wd if wd else '')
    mod, attr = target, ''
    for i, ch in enumerate(target):
        if ch == ':' and target[i + 1:i + 2] not in ('/', '\\'):
            mod, attr = target[:i], target[i + 1:]
            break
    if mod.endswith('.py') or os.sep in mod:
        path = os.path.realpath(mod)
        if path.endswith('.py'):
            path = path[:-3]
        top, name = os.path.split(path)
        if name == '__init__':
            top, name = os.path.split(top)
        parts = [name]
        while os.path.exists(os.path.join(top, '__init__.py')):
            top, name = os.path.split(top)
            parts.insert(0, name)
        sys.path.insert(0, top)
        mod = '.'.join(parts)
    obj = importlib.import_module(mod)
    for part in (attr or 'app').split('.'):
        obj = getattr(obj, part)
    if factory:
        obj = obj()
    if not callable(obj) and not hasattr(obj, '__rsgi__'):   # RSGI: __rsgi__ is enough
        raise TypeError(f'{target!r} is not a callable application')
    return obj
