"""Import every domain's tables so the metadata (and Alembic) sees all of them."""

from shanju.accounts import models as accounts_models
from shanju.campaigns import models as campaigns_models
from shanju.complaints import models as complaints_models
from shanju.core import audit, files, images, mail
from shanju.core.db import Base
from shanju.donations import models as donations_models
from shanju.ledger import models as ledger_models
from shanju.organizations import models as organizations_models
from shanju.payments import models as payments_models
from shanju.projects import models as projects_models
from shanju.reconciliation import models as reconciliation_models
from shanju.summit import models as summit_models
from shanju.transparency import models as transparency_models

__all__ = [
    "Base",
    "accounts_models",
    "audit",
    "campaigns_models",
    "complaints_models",
    "donations_models",
    "files",
    "images",
    "ledger_models",
    "mail",
    "organizations_models",
    "payments_models",
    "projects_models",
    "reconciliation_models",
    "summit_models",
    "transparency_models",
]
