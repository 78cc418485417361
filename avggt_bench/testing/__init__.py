"""Helpers shared by the tests and by users checking their own installation.

Production code never imports this package (`tests/test_metrics_contract.py` checks it): what
production needs lives in production modules, re-exported here under the names the tests use.
"""
