"""Fixtures for the web tests: the loopback OIDC provider standing in for Google."""

from tests.fakes.oidc import fake_oidc  # noqa: F401  (fixture)
