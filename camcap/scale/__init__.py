"""camcap past one machine.

- `stand_in`: a simulated OpenAI-compatible engine whose time follows a continuous-batching GPU
  curve (fixed cost per step plus a cost per sequence in the batch, up to a max batch). For
  `camcap bench --scenarios scale_out` and tests; it writes no real captions.
- `router`: a small least-loaded / round-robin HTTP router in front of several such engines (or
  camcap servers), standing in for a real deployment's router (vLLM production stack, Ray Serve,
  a Kubernetes Service) in the simulation.
- `ray_app`: camcap's own backends as a Ray Serve application behind the same OpenAI-compatible API
  (needs the `camcap[ray]` extra).

docs/scaling.md says how a site runs camcap past one machine on a real engine.
"""
