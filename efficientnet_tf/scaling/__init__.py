"""The compound-scaling search (V1 paper §3.3): plan.py (which networks to train), search.py
(training them, sharded and resumable), report.py (the chosen α, β, γ and its rows)."""
