"""Stage 8 — microservices and replicas (the seed's "Cluster"): services of N
identical containers behind one address, kept running by a reconcile loop.

Layer 7: may import the client (labkit.api) and every layer below it.
"""
