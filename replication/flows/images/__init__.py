"""Image architectures of the six methods, registered for the ``image`` data kind.

Every builder starts with the logit transform, so ``flow.log_prob(x)`` is the log-density of the
dequantized image x in [0, 1]^D and ``evaluate.bits_per_dim(nll, D)`` gives bits/dim; every
latent is flattened to ``[B, D]``.

==========  ==========================================================================
nice        :mod:`.nice`: additive couplings on the flattened image, diagonal scaling
realnvp     :mod:`.realnvp`: checkerboard/channel affine couplings, multi-scale
glow        :mod:`.glow`: actnorm, 1x1 convolution, affine coupling, multi-scale
cnf         :mod:`.odenvp`: planar-hypernetwork CNF blocks in FFJORD's multi-scale flow
ffjord      :mod:`.odenvp`: FFJORD's multi-scale flow of convolutional CNF blocks
rnode       :mod:`.odenvp`: the same with RNODE's penalties and training solver
==========  ==========================================================================
"""

from replication.flows.images import glow as _glow  # noqa: F401  (registers methods)
from replication.flows.images import nice as _nice  # noqa: F401  (registers methods)
from replication.flows.images import odenvp as _odenvp  # noqa: F401  (registers methods)
from replication.flows.images import realnvp as _realnvp  # noqa: F401  (registers methods)
from replication.flows.images.layers import LogitTransform

__all__ = ["LogitTransform"]
