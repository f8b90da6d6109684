"""Model families as EDM denoisers D(x, sigma, cond): discrete-time VP, flow matching, latent decoders,
diffusers folders."""
