"""The Celery worker: takes the end-contact and resume-contact tasks off the queue in
batches and writes each batch's changes to the store in one round trip
(worker.celery_seam)."""
