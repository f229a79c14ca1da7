"""Quanzu (劝阻): carries anti-fraud alert instructions to the people who can stop a fraud, through WeCom."""
