"""The LLM proxy's rules, free of I/O: who may call which provider and model
(:mod:`.grant`), how many tokens a call used (:mod:`.usage`), budgets per day
(:mod:`.budget`) and the service that puts them together (:mod:`.service`)."""
