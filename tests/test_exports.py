"""The public API is exactly ``__all__``, and every name in it resolves."""

import subprocess
import sys

import sliceseg


def test_every_exported_name_resolves():
    for name in sliceseg.__all__:
        assert getattr(sliceseg, name) is not None, name


def test_import_does_not_load_torch():
    code = "import sys, sliceseg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_is_the_function_not_the_module():
    assert callable(sliceseg.train)
    assert sliceseg.train.__module__ == "sliceseg.training.loop"
