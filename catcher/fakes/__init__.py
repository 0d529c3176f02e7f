"""Fake external services on loopback, for `catcher demo` and the tests.

Each fake is a real HTTP server (aiohttp) that follows the real service's API on the points
Catcher depends on, records every request it receives, and can be told to fail, stall or
answer late.
"""
