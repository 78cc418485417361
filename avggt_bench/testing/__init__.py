"""Helpers shared by the tests and by users checking their own installation."""
