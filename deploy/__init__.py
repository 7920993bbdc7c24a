"""Delivery tooling: manifest validation, GitOps release edits, pre-flight and smoke checks.

The GitHub workflows call these modules (``python -m deploy.<module>``); the tests call the
same functions. Modules that run before the project is installed (``preflight``,
``smoke``, ``argocd``) use only the standard library.
"""
