"""Loss registry: `get(name, **options)` -> loss object `loss(scores, labels, temperature=1.0)`.

Every loss takes `scores` `[B, B*G]` (each query against every passage of the batch, query i's own
group in columns `i*G .. i*G+G-1`) and `labels` `[B, G]` (graded labels of the own group) and
returns a scalar tensor. docs/method.md gives the math. To add a loss, write one module with a
class decorated by `@register("name")` and import it below.
"""

from listrank.losses.registry import available, get, loss_class, register, trait

# Importing a loss module registers its loss.
from listrank.losses.infonce import InfoNCELoss
from listrank.losses.listnet import ListNetLoss
from listrank.losses.wasserstein import WassersteinLoss

__all__ = ["available", "get", "loss_class", "register", "trait", "InfoNCELoss", "ListNetLoss", "WassersteinLoss"]
