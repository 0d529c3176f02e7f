"""Names and defaults shared by the whole package."""

__all__ = ["DEFAULT_TOPIC_PREFIX", "USER_HEADER"]

DEFAULT_TOPIC_PREFIX = "lsst.catcher"
"""Default prefix of Catcher's topics and of its Avro namespace."""

USER_HEADER = "X-Auth-Request-User"
"""The header Gafaelfawr sets to the authenticated user's name."""
