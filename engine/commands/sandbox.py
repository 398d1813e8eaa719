"""`idwell-sync sandbox` (not built yet)."""
HELP = "sandbox (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync sandbox: not built yet")
