"""Choosing a model for a canister: judge a Hub repo's files by their headers and write a recipe."""
