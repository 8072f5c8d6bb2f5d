"""The Celery worker: runs the end-contact and resume-contact tasks, in batches
(worker.celery_seam)."""
