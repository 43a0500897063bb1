"""A small stand-in for ``devtools_testutils``, the Azure SDK repository's test helper.

The official Key Vault test suites import it, but it is not published on PyPI. This stand-in
behaves as the upstream helper does in live mode without recording (``AZURE_TEST_RUN_LIVE=true``,
``AZURE_SKIP_LIVE_RECORDING=true``), which is the only mode the emulator runs them in:

- ``is_live()`` reads ``AZURE_TEST_RUN_LIVE``;
- ``recorded_by_proxy`` just calls the test (with the keyword arguments its signature accepts);
- sanitizers, matchers and the ``test_proxy`` fixture do nothing (there is no test proxy);
- ``AzureRecordedTestCase.get_credential`` returns a ``ClientSecretCredential`` built from
  ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID`` and ``AZURE_CLIENT_SECRET``;
- resource names follow the upstream scheme: the prefix plus the hex Adler-32 checksum of the
  running test's id, so each test gets its own, repeatable names;
- ``AzureRecordedTestCase.await_prepared_test`` runs an async test from a synchronous one,
  creating an event loop when none is running;
- the ``live_test_only`` and ``playback_test_only`` markers skip as upstream's pytest
  configuration does (``devtools_testutils.plugin``, loaded with ``-p``).
"""

import asyncio
import functools
import inspect
import os
import time
import zlib

import pytest

__all__ = [
    "AzureMgmtPreparer",
    "AzureRecordedTestCase",
    "get_resource_name",
    "is_live",
    "recorded_by_proxy",
    "test_proxy",
]

_TRUE = ("true", "yes", "1", "on")


def is_live():
    """Whether the tests run against a live service (``AZURE_TEST_RUN_LIVE``)."""
    return os.environ.get("AZURE_TEST_RUN_LIVE", "").strip().lower() in _TRUE


def is_live_and_not_recording():
    """Live, and ``AZURE_SKIP_LIVE_RECORDING`` says not to record."""
    return is_live() and os.environ.get("AZURE_SKIP_LIVE_RECORDING", "").strip().lower() in _TRUE


def get_resource_name(name_prefix, identifier):
    """``name_prefix`` plus the hex Adler-32 checksum of ``identifier`` (bytes)."""
    checksum = zlib.adler32(identifier) & 0xFFFFFFFF
    return "{}{}".format(name_prefix, format(checksum, "x"))


def trim_kwargs(func, kwargs):
    """The keyword arguments ``func`` accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def recorded_by_proxy(test_func):
    """Live without recording: call the test as it is."""

    @functools.wraps(test_func)
    def record_wrap(*args, **kwargs):
        return test_func(*args, **trim_kwargs(test_func, kwargs))

    return record_wrap


def run_coroutine(coro):
    """Runs ``coro`` to completion, creating an event loop when none is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("a coroutine cannot be run synchronously inside a running event loop; await it")


@pytest.fixture(scope="session")
def test_proxy():
    """There is no test proxy in live mode without recording."""
    yield


def _no_op(*_args, **_kwargs):
    return None


# Sanitizers and matchers only configure the (absent) test proxy.
add_body_key_sanitizer = _no_op
add_body_regex_sanitizer = _no_op
add_body_string_sanitizer = _no_op
add_continuation_sanitizer = _no_op
add_general_regex_sanitizer = _no_op
add_general_string_sanitizer = _no_op
add_header_regex_sanitizer = _no_op
add_oauth_response_sanitizer = _no_op
add_remove_header_sanitizer = _no_op
add_uri_regex_sanitizer = _no_op
add_uri_string_sanitizer = _no_op
remove_batch_sanitizers = _no_op
set_bodiless_matcher = _no_op
set_custom_default_matcher = _no_op
set_default_function_settings = _no_op
set_default_session_settings = _no_op
set_function_recording_options = _no_op
set_headerless_matcher = _no_op
set_session_recording_options = _no_op


class AzureRecordedTestCase:
    """Base class of the suites' test classes (live mode only)."""

    @property
    def is_live(self):
        return is_live()

    @property
    def in_recording(self):
        return self.is_live

    @property
    def recording_processors(self):
        return []

    def is_playback(self):
        return not self.is_live

    def get_settings_value(self, key):
        value = os.environ.get("AZURE_" + key)
        if value is None:
            raise KeyError("AZURE_{} is not set".format(key))
        return value

    def get_credential(self, client_class, **kwargs):
        """A ``ClientSecretCredential`` (async with ``is_async=True``) from the environment."""
        is_async = kwargs.pop("is_async", False)
        tenant_id = os.environ.get("AZURE_TENANT_ID")
        client_id = os.environ.get("AZURE_CLIENT_ID")
        secret = os.environ.get("AZURE_CLIENT_SECRET")
        if not (tenant_id and client_id and secret):
            raise RuntimeError(
                "live tests need AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
                "(the suites copy them from KEYVAULT_TENANT_ID, KEYVAULT_CLIENT_ID and KEYVAULT_CLIENT_SECRET)"
            )
        if is_async:
            from azure.identity.aio import ClientSecretCredential
        else:
            from azure.identity import ClientSecretCredential
        return ClientSecretCredential(tenant_id=tenant_id, client_id=client_id, client_secret=secret, **kwargs)

    def create_client_from_credential(self, client_class, credential, **kwargs):
        kwargs.setdefault("logging_enable", True)
        return client_class(credential=credential, **kwargs)

    def create_random_name(self, name):
        unique_test_name = os.environ.get("PYTEST_CURRENT_TEST", "").encode("utf-8")
        return get_resource_name(name, unique_test_name)

    def get_resource_name(self, name):
        return self.create_random_name(name)

    def get_preparer_resource_name(self, prefix):
        return self.get_resource_name(prefix)

    @staticmethod
    def await_prepared_test(test_fn):
        """Makes an async (prepared) test callable as a synchronous one."""

        @functools.wraps(test_fn)
        def run(test_class_instance, *args, **kwargs):
            return run_coroutine(test_fn(test_class_instance, *args, **trim_kwargs(test_fn, kwargs)))

        return run

    def sleep(self, seconds):
        if self.is_live:
            time.sleep(seconds)


class AzureMgmtPreparer:
    """Importable base of resource preparers; the live suites run here do not use it."""

    def __init__(self, name_prefix, random_name_length, random_name_enabled=False, **kwargs):
        self.name_prefix = name_prefix
        self.random_name_length = random_name_length
        self.random_name_enabled = random_name_enabled
        self.client_kwargs = kwargs.pop("client_kwargs", {})
        self.is_live = is_live()

    def __call__(self, fn):
        raise NotImplementedError("resource preparers are not supported by this stand-in")
