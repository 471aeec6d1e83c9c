"""Planting: the catalog, plantings and their certificates, orders for NGO partners, and the
webhooks (a transactional outbox) that tell partners about them."""
