# The two commands of the README. Both set up what they need (scripts/bootstrap).
.PHONY: demo test bootstrap bench

bootstrap:
	./scripts/bootstrap

demo: bootstrap
	.venv/bin/idwell-sync demo

test: bootstrap
	cd tests && ../.venv/bin/pytest -n 2 -q $(PYTEST_ARGS)

bench: bootstrap
	.venv/bin/python -m benchmarks.run $(BENCH_ARGS)
