"""Dart Cloud: a self-hosted platform for Dart serverless functions."""

__version__ = "0.1.0"
