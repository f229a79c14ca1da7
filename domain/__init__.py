"""The domain: what an instruction, a deadline, a card, a campaign and a report are, and the rules that move
them (lifecycle, policy, masking, amounts). Pure: no I/O and no framework imports, so that storage/ below and
the services above can both depend on it, and it on nothing of theirs (tests/test_import_graph.py)."""
