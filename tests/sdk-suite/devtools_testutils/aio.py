"""``devtools_testutils.aio``: the async ``recorded_by_proxy``."""

import functools

from . import run_coroutine, trim_kwargs  # noqa: F401 (run_coroutine is part of this module's API)


def recorded_by_proxy_async(test_func):
    """Live without recording: await the test as it is."""

    @functools.wraps(test_func)
    async def record_wrap(*args, **kwargs):
        return await test_func(*args, **trim_kwargs(test_func, kwargs))

    return record_wrap

