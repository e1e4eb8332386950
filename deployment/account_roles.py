"""The roles an account may have, least privileged first.

The settings name them (the identity mappings ``oidc.roles`` and ``ldap.roles``, checked when
the config is read) and the store keeps them on each account."""

from __future__ import annotations

ROLES = ("learner", "staff", "it_support", "manager", "dsl", "admin")
