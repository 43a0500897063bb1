"""pytest plugin: shortens the suites' own waits for the real service's eventual consistency.

In live mode some tests sleep for a minute after a purge before restoring, because Key Vault
completes a purge in the background. The emulator purges at once, so every ``time.sleep`` and
``asyncio.sleep`` a test module calls itself is capped at ``MAX_WAIT_SECS``; one-second waits
(e.g. to make ``updated`` differ from ``created``) are kept as they are. The SDK's own sleeps
(retries, pollers) are not touched.
"""

import asyncio
import time

MAX_WAIT_SECS = 1.0


class _CappedTime:
    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def sleep(self, seconds):
        self._module.sleep(min(seconds, MAX_WAIT_SECS))


class _CappedAsyncio:
    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    async def sleep(self, delay, result=None):
        return await self._module.sleep(min(delay, MAX_WAIT_SECS), result)


def pytest_collection_finish(session):
    for module in {id(item.module): item.module for item in session.items if getattr(item, "module", None)}.values():
        if getattr(module, "time", None) is time:
            module.time = _CappedTime(time)
        if getattr(module, "asyncio", None) is asyncio:
            module.asyncio = _CappedAsyncio(asyncio)
