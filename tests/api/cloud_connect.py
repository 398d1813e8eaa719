"""The Cloud Connect stand-in the tests serve: engine.demo.cloud_connect (also `idwell-sync
erp-sandbox`)."""
from engine.demo.cloud_connect import QUERIES, CloudConnect  # noqa: F401
