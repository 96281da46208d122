"""The public surface: ``__all__`` is complete and public classes present as the package."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import oauth2_token_manager


def test_all_lists_every_public_name_once() -> None:
    """Every name in __all__ exists, none is private, none is listed twice."""
    names = oauth2_token_manager.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("_")
        assert hasattr(oauth2_token_manager, name)


def test_public_classes_show_the_package_as_their_module() -> None:
    """Public classes repr as oauth2_token_manager.X, not a private module."""
    for name in oauth2_token_manager.__all__:
        obj = getattr(oauth2_token_manager, name)
        if isinstance(obj, type):
            assert obj.__module__ == "oauth2_token_manager", name


def test_private_modules_define_all() -> None:
    """Every private module states its exports in __all__ (as httpx does)."""
    package = oauth2_token_manager.__path__
    for info in pkgutil.walk_packages(package, "oauth2_token_manager."):
        module = importlib.import_module(info.name)
        if not info.ispkg:
            assert isinstance(getattr(module, "__all__", None), list), info.name


def test_every_exported_exception_is_library_error() -> None:
    """Every exported exception class derives from OAuth2TokenManagerError."""
    for name in oauth2_token_manager.__all__:
        obj = getattr(oauth2_token_manager, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, oauth2_token_manager.OAuth2TokenManagerError), name


def test_redis_stores_load_lazily_from_their_modules() -> None:
    """Importing the package imports no redis; the Redis stores load on first access."""
    code = (
        "import sys, oauth2_token_manager as o\n"
        "assert 'redis' not in sys.modules\n"
        "from oauth2_token_manager._stores._async_redis import AsyncRedisStore as A\n"
        "from oauth2_token_manager._stores._redis import RedisStore as S\n"
        "assert (o.AsyncRedisStore, o.RedisStore) == (A, S)\n"
        "assert S.__module__ == A.__module__ == 'oauth2_token_manager'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
