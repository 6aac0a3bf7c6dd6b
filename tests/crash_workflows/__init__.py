"""Workflows for crash tests (``WORKFLOWS_PACKAGE=tests.crash_workflows``)."""
