"""Catcher's services: planning actions from triggers, and running them."""
