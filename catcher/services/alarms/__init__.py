"""Alarms: the Watcher's machine, its owner, the view, paging and the LOVE producer."""
