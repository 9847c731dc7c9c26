"""``python -m local_traces trace <correlationId>``: an order's spans on a laptop, as a waterfall."""
