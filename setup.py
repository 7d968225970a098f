"""Build steps pyproject.toml cannot state: the compiled line scanner and the data folders of a wheel.

The scanner (``fhir_adapter/sources/_linescan.c``) and the shape check (``fhir_adapter/record/_shapes.c``) are
optional: where they do not compile, the install goes on and the same decisions run in Python
(``sources/prefilter.py``, ``record/shapes.py``).
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA = ("mappings", "profiles", "studies")  # shipped as fhir_adapter/_data/<name> (fhir_adapter/paths.py)


class BuildWithData(build_py):
    """build_py that also copies the top-level data folders into the wheel's ``fhir_adapter/_data``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them where they are
            return
        for name in DATA:
            target = Path(self.build_lib) / "fhir_adapter" / "_data" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(HERE / name, target)


setup(
    cmdclass={"build_py": BuildWithData},
    ext_modules=[
        Extension("fhir_adapter.sources._linescan", ["fhir_adapter/sources/_linescan.c"],
                  extra_compile_args=["-O2"], optional=True),
        Extension("fhir_adapter.record._shapes", ["fhir_adapter/record/_shapes.c"],
                  extra_compile_args=["-O2"], optional=True),
    ],
)
