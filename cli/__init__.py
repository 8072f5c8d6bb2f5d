"""The `endcontact` command: run the service, its parts, and manage API keys."""
