"""Rewards beyond trees: vouchers, transit rides, merchant discounts and bank benefits that
partners offer for energy (a layer beside planting, above energy and the ledger)."""
