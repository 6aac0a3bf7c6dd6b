"""Agents for the exactly-once tests: tools whose effects land in files outside the app process."""
