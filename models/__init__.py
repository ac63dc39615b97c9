"""Tables. Importing this package registers every table on SQLModel.metadata (Alembic needs all of them)."""

from models.decisions import Decision
from models.deliveries import Delivery
from models.deployments import Deployment, DeploymentStatus, Environment
from models.gitops import Candidate, RepoConfig
from models.installations import Installation, InstallationRepository
from models.keys import ApiKey

__all__ = [
    "ApiKey", "Candidate", "Decision", "Delivery", "Deployment", "DeploymentStatus", "Environment",
    "Installation", "InstallationRepository", "RepoConfig",
]
