"""Speed kernels (CSR products, fused ops, chunked MLP backward, penalties, predictor, allocator)."""
