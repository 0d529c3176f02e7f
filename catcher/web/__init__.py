"""The worker's HTTP side: the alarm API (``alarms``), its OpenAPI document (``openapi``)."""
