"""Campaigns: time-boxed goals users donate energy to (a layer beside planting and rewards)."""
