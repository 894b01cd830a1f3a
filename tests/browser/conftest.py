"""Keeps each test's outcome on its item, so that the browser fixtures can save a screenshot when a test fails."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
