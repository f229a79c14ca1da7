"""Scheduled anti-fraud awareness broadcasts (宣防) to residents' groups, targeted at local fraud trends."""
