"""Build hook for the optional C extension; everything else is configured in pyproject.toml.

``categories._urlfast`` (the C fast path of ``categories.urlnorm.canonical_url``) is built when
a C compiler and the Python headers are present. ``optional=True`` lets the install go on
without it, and ``categories.urlnorm`` then uses the pure-Python fast path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "categories._urlfast",
            sources=["categories/_urlfast.c"],
            optional=True,
        ),
    ],
)
