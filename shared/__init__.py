"""Domain code shared by the web and worker processes: no HTTP, no Celery."""
