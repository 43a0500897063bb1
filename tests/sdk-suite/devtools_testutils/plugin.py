"""pytest plugin: the markers the Azure SDK repository's pytest configuration defines.

- ``live_test_only``: skipped unless the run is live;
- ``playback_test_only``: skipped in a live run that does not record (the only mode here).
"""

import pytest

from . import is_live, is_live_and_not_recording


def pytest_configure(config):
    config.addinivalue_line("markers", "live_test_only: the test runs only against a live service")
    config.addinivalue_line("markers", "playback_test_only: the test runs only from recordings")


def pytest_runtest_setup(item):
    if any(item.iter_markers(name="live_test_only")) and not is_live():
        pytest.skip("live test only")
    if any(item.iter_markers(name="playback_test_only")) and is_live_and_not_recording():
        pytest.skip("playback test only")
