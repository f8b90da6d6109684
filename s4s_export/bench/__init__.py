"""`s4s-export bench`: sampler latency, throughput and overhead per backend, and the cost of learning.

It sits above export/ (its graphs are built by the build pipeline) and below commands/:
run (the request, the solver picked, timing rows), backends (the timed calls per backend),
learning_cost (run record or a short learn subprocess), report (Markdown); for latent text models,
latent (the baked graph against host_loop, the UNet + VAE sessions pipeline with the scheduler on the host).
"""
