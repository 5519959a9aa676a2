"""The GNN flyvis_A (maths) and its naive per-edge oracle."""
