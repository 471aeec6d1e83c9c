"""Joint planting (groves): friends pool energy for one catalog item, planted when it is full.

Groves live in ``planting`` (not ``game``) because the completing contribution plants the tree
through the planting layer, which stands above the game."""
