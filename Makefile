# The two commands a newcomer needs; both set themselves up.
.PHONY: run test bench
run:  ## start the server on its embedded default (SQLite in ./data, development mode)
	scripts/run
test: ## run the whole test suite (creates .venv, .venv313 and the npm test peers)
	scripts/test
bench: ## roomsvc vs bare aiohttp and python-socketio (docs/benchmarks.md); make bench ARGS=--quick
	scripts/bench $(ARGS)
