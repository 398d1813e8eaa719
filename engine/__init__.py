"""idwell-sync: a declarative, config-driven one-way sync from a property manager's ERP into iDWELL."""
__version__ = "0.1.0"
